"""The torch backend's precisions: fp32 unchanged, bf16/fp16 through autocast with fp32 islands,
batched key encoding, TF32 switching, and how ``precision`` resolves."""
from __future__ import annotations

import threading
import time

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vscolormnet.backends import BackendError, Torch
from vscolormnet.backends.torch_backend import FP32_MODE, Fp32Mode, TorchBackend
from vscolormnet.model.blocks import LayerNorm2d
from vscolormnet.model.precision import fp32_island

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (fp16 and TF32 run on CUDA only)")
HW = (112, 112)


@pytest.fixture(scope="module")
def net(parity_checkpoint):
    from vscolormnet.weights.checkpoint import load_model
    return load_model(str(parity_checkpoint))


def stage_inputs(seed=0, hw=HW, n=1):
    gen = torch.Generator().manual_seed(seed)
    h, w = hw[0] // 16, hw[1] // 16
    return {
        "image": torch.randn(n, 3, *hw, generator=gen), "ab": torch.rand(1, 2, *hw, generator=gen) * 2 - 1,
        "hidden": torch.randn(1, 2, 64, h, w, generator=gen), "value": torch.randn(1, 2, 512, h, w, generator=gen),
    }


def all_stages(be, x):
    """Every stage once on ``x`` (``stage_inputs``): {stage: output tuple}."""
    out = be.encode_key(x["image"])
    key, f16, f8, f4 = out[0], *out[3:]
    return {
        "encode_key": out,
        "encode_value": (be.encode_value(x["image"], f16, x["ab"]),),
        "encode_value_deep": be.encode_value_deep(x["image"], f16, x["ab"], x["hidden"]),
        "short_term_attention": (be.short_term_attention(key, key.roll(1, -1), x["value"]),),
        "decode": (be.decode(f16, f8, f4, x["value"], x["hidden"]),),
        "decode_update": be.decode_update(f16, f8, f4, x["value"], x["hidden"]),
    }


# -- fp32 stays what it was -------------------------------------------------------------------------

def test_fp32_backend_is_the_plain_network(net):
    """precision='fp32' adds nothing: every stage output is bit-identical to the network's own method."""
    be = TorchBackend(Torch(device="cpu"), net)
    x = stage_inputs()
    got = all_stages(be, x)
    with torch.inference_mode():
        key, shrinkage, selection, f16, f8, f4 = net.encode_key(x["image"])
        want = {"encode_key": (key, shrinkage, selection, f16, f8, f4),
                "encode_value": (net.encode_value(x["image"], f16, x["ab"]),),
                "encode_value_deep": net.encode_value_deep(x["image"], f16, x["ab"], x["hidden"]),
                "short_term_attention": (net.short_term_attention(key, key.roll(1, -1), x["value"]),),
                "decode": (net.decode(f16, f8, f4, x["value"], x["hidden"]),),
                "decode_update": net.decode_update(f16, f8, f4, x["value"], x["hidden"])}
    for stage in want:
        for g, w in zip(got[stage], want[stage]):
            assert g.dtype == torch.float32 and torch.equal(g, w), stage


def test_island_is_a_plain_call_outside_autocast():
    """Without autocast the decorated method gets the caller's tensors themselves (no cast, no copy)."""
    seen = []

    class Probe(torch.nn.Module):
        @fp32_island
        def forward(self, x, y=None):
            seen.append((x, y, torch.is_autocast_enabled("cpu")))
            return x

    x, y = torch.randn(2, 3).bfloat16(), torch.randn(2)
    assert Probe()(x, y=y) is x and seen[-1][0] is x and seen[-1][1] is y
    with torch.autocast("cpu", torch.bfloat16):
        out = Probe()(x, y=y)
    assert out.dtype == torch.float32 and torch.equal(out, x.float()) and seen[-1][1] is y
    assert seen[-1][2] is False, "autocast is off inside the island"
    with torch.autocast("cpu", torch.bfloat16), fp32_island(x):
        assert not torch.is_autocast_enabled("cpu")
    norm = LayerNorm2d(4)
    assert norm(torch.randn(1, 4, 2, 2).half()).dtype == torch.float16    # the explicit-dtype path is unchanged


# -- reduced precision: autocast with fp32 islands -------------------------------------------------

class OpLog(TorchDispatchMode):
    """Records (innermost module name, aten op, floating input dtypes) of every op dispatched."""

    def __init__(self, model):
        super().__init__()
        self.records, self.stack, self.handles = [], [""], []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self._enter(n)))
            self.handles.append(module.register_forward_hook(lambda m, a, o: self._leave()))

    def _enter(self, name):
        self.stack.append(name)

    def _leave(self):
        self.stack.pop()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        dtypes = {a.dtype for a in torch.utils._pytree.tree_leaves((args, kwargs or {}))
                  if isinstance(a, torch.Tensor) and a.is_floating_point()}
        self.records.append((self.stack[-1], func.overloadpacket.__name__, dtypes))
        return func(*args, **(kwargs or {}))

    def remove(self):
        for h in self.handles:
            h.remove()

    def ops(self, where=None, names=None):
        return [(m, op, d) for m, op, d in self.records
                if (where is None or where(m)) and (names is None or op in names)]


CONV = {"conv2d", "convolution", "_convolution", "mkldnn_convolution"}
SOFTMAX = {"softmax", "_softmax"}
MATMUL = {"matmul", "bmm", "mm"}


def run_logged(module, *args, call=None):
    """``(call or module)(*args)`` under bf16 autocast (as the backend runs it), ``module``'s ops logged."""
    log = OpLog(module)
    try:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16), log:
            out = (call or module)(*args)
    finally:
        log.remove()
    return out, log


def test_islands_run_in_fp32_under_autocast(net):
    """Key projection, DINOv2's attention core, the fusion blocks' attention and every LayerNorm see
    float32 under bf16 autocast, while the convolutions and linear layers around them see bf16."""
    gen = torch.Generator().manual_seed(0)
    fp32, bf16 = {torch.float32}, {torch.bfloat16}

    out, log = run_logged(net.key_proj, torch.randn(1, 1024, 4, 4, generator=gen))
    assert all(o.dtype == torch.float32 for o in out)
    assert len(log.ops(names=CONV)) == 3 and all(d == fp32 for _, _, d in log.records if d)

    block = net.key_encoder.network2.backbone.blocks[0]
    out, log = run_logged(block, torch.randn(1, 17, 384, generator=gen))
    core = log.ops(where=lambda m: m.endswith("attn"), names=SOFTMAX | MATMUL | {"scaled_dot_product_attention"})
    assert core and all(d == fp32 for _, _, d in core), core
    assert [d for _, _, d in log.ops(names={"layer_norm", "native_layer_norm"})] == [fp32, fp32]
    assert [d for _, _, d in log.ops(names={"linear", "addmm"})] == [bf16] * 4, "qkv, proj, fc1, fc2 in bf16"

    fuse = net.key_encoder.fuse3                # its depthwise convs are slow in emulated bf16: parts only
    out, log = run_logged(fuse.norm1, torch.randn(1, 256, 4, 4, generator=gen).bfloat16())
    stats = log.ops(names={"mean", "pow", "sqrt", "div"})
    assert out.dtype == torch.float32 and len(stats) >= 4 and all(d == fp32 for _, _, d in stats), stats
    q, k, v = (torch.randn(1, 8, 64, 16, generator=gen).bfloat16() for _ in range(3))
    out, log = run_logged(fuse.crossattn, q, k, v, call=fuse.crossattn.core)
    core = log.ops(names=SOFTMAX | MATMUL | {"linalg_vector_norm", "clamp_min", "div", "mul"})
    assert out.dtype == torch.float32 and len(core) >= 6 and all(d == fp32 for _, _, d in core), core


@pytest.mark.slow
def test_bf16_stages_keep_the_contract_and_stay_close(net):
    """All six stages in bf16 on the CPU: float32 outputs of the fp32 shapes, near the fp32 values;
    a copy with the conv/linear weights pre-cast to bf16 computes exactly what autocast does."""
    x = stage_inputs()
    ref = all_stages(TorchBackend(Torch(device="cpu"), net), x)
    plain = TorchBackend(Torch(device="cpu", precision="bf16"), net)
    log = OpLog(net)
    try:
        with log:
            got = all_stages(plain, x)
    finally:
        log.remove()
    fp32 = {torch.float32}
    assert any(d == {torch.bfloat16} for _, _, d in log.ops(names=CONV)), "autocast ran"
    for what, ops in [("softmax", log.ops(names=SOFTMAX)),
                      ("sdpa", log.ops(names={"scaled_dot_product_attention"})),
                      ("layer norm", log.ops(names={"layer_norm", "native_layer_norm"})),
                      ("key_proj", log.ops(where=lambda m: m.startswith("key_proj"))),
                      ("crossattn", log.ops(where=lambda m: m.endswith(".crossattn"), names=MATMUL | SOFTMAX))]:
        assert ops and all(d <= fp32 for _, _, d in ops), what
    for stage in ref:
        for g, r in zip(got[stage], ref[stage]):
            assert g.dtype == torch.float32 and g.shape == r.shape and torch.isfinite(g).all(), stage
            assert not torch.equal(g, r), f"{stage}: bf16 ran"
            rel = (g - r).norm() / r.norm()
            assert rel < 0.05, f"{stage}: relative L2 error {rel:.3g}"

    cast = TorchBackend(Torch(device="cpu", precision="bf16"), net, cast_weights=True)
    assert not plain.cast_weights and plain.model is net and cast.model is not net
    assert cast.model.key_proj.d_proj.weight.dtype == torch.float32                # read in fp32 islands
    assert cast.model.short_term_attn.relative_emb_k.weight.dtype == torch.float32
    assert cast.model.decoder.pred.weight.dtype == torch.bfloat16
    assert net.decoder.pred.weight.dtype == torch.float32, "the shared network is left as it was"
    key, f16 = ref["encode_key"][0], ref["encode_key"][3]
    assert torch.equal(cast.encode_value(x["image"], f16, x["ab"]), plain.encode_value(x["image"], f16, x["ab"]))
    assert torch.equal(cast.short_term_attention(key, key.roll(1, -1), x["value"]),
                       plain.short_term_attention(key, key.roll(1, -1), x["value"]))


# bf16 end to end (a parity case's first frame, bf16 against fp32 within weights/parity.py's bounds) is
# the "bf16 vs fp32" row of the gpu_check CPU rehearsal (tests/test_scripts.py, the `large` tier), through
# the same colorize_frames path: the emulated bf16 of CPUs without avx512_bf16 makes each run cost a minute.


# -- batched key encoding ----------------------------------------------------------------------------

def test_encode_key_batch_equals_single_frames(net):
    be = TorchBackend(Torch(device="cpu"), net)
    images = stage_inputs(n=2)["image"]
    batched = be.encode_key_batch(images)
    singles = [be.encode_key(images[i:i + 1]) for i in range(2)]
    for j, name in enumerate(("key", "shrinkage", "selection", "f16", "f8", "f4")):
        assert batched[j].shape[0] == 2 and batched[j].dtype == torch.float32
        for i in range(2):
            err = (batched[j][i:i + 1] - singles[i][j]).abs().max().item()
            assert err <= 1e-5, f"{name} frame {i}: {err:.2e}"


# -- precision resolution and refusals ----------------------------------------------------------------

def test_precision_resolution(monkeypatch):
    from vscolormnet.util.cpuinfo import native_bf16
    monkeypatch.delenv("VSCOLORMNET_CPU_BF16", raising=False)
    assert Torch().resolved_precision() == "fp32" and Torch(fp16=True, device="cuda").resolved_precision() == "fp16"
    assert Torch(device="cuda", precision="auto").resolved_precision() == "fp16"
    assert Torch(device="cuda", precision="bf16").resolved_precision() == "bf16"
    assert Torch(precision="auto").resolved_precision() == ("bf16" if native_bf16() else "fp32")
    monkeypatch.setenv("VSCOLORMNET_CPU_BF16", "1")
    assert Torch(precision="auto").resolved_precision() == "bf16"
    Torch(precision="auto").check()
    monkeypatch.setenv("VSCOLORMNET_CPU_BF16", "0")
    assert Torch(precision="auto").resolved_precision() == "fp32"


def test_auto_is_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    """This rule needs such a CPU (AVX2-only, e.g. the EPYC the tests were written on)."""
    from vscolormnet.util.cpuinfo import native_bf16
    monkeypatch.delenv("VSCOLORMNET_CPU_BF16", raising=False)
    if native_bf16():
        pytest.skip("this CPU computes bf16 natively")
    assert Torch(precision="auto").resolved_precision() == "fp32"


def test_fp16_on_the_cpu_and_bad_precisions_are_refused(net):
    with pytest.raises(BackendError, match="precision='fp16' needs device='cuda'"):
        Torch(precision="fp16").check()
    with pytest.raises(BackendError, match="precision must be one of 'auto', 'fp32', 'fp16', 'bf16' or None, got 'fp8'"):
        Torch(precision="fp8").check()
    assert TorchBackend(Torch(device="cpu", precision="bf16"), net).describe() == "torch on cpu (bf16)"


# -- TF32: the process-wide flags, held per call --------------------------------------------------------

def test_fp32_mode_sets_and_restores_the_flags():
    """The flags are plain process state (settable without a GPU): set inside a call, restored after."""
    before = Fp32Mode.current()
    mode = Fp32Mode()
    with mode.hold(False):
        assert Fp32Mode.current() == ("ieee", "ieee")
        with mode.hold(False):                      # same mode: joins
            assert Fp32Mode.current() == ("ieee", "ieee")
        assert Fp32Mode.current() == ("ieee", "ieee")
    assert Fp32Mode.current() == before
    with mode.hold(True):
        assert Fp32Mode.current() == ("tf32", "tf32")
    assert Fp32Mode.current() == before


def test_fp32_mode_serialises_disagreeing_calls_only():
    mode, events, seen = Fp32Mode(), [], []
    entered = threading.Barrier(2, timeout=10)

    def call(tf32, tag, hold_s, barrier=None):
        with mode.hold(tf32):
            seen.append((tag, Fp32Mode.current()))
            events.append(f"{tag}+")
            if barrier:
                barrier.wait()
            time.sleep(hold_s)
            events.append(f"{tag}-")

    # two tf32 calls overlap (both must be inside for the barrier to pass) ...
    a = threading.Thread(target=call, args=(True, "a", 0.2, entered))
    b = threading.Thread(target=call, args=(True, "b", 0.2, entered))
    a.start(), b.start()
    time.sleep(0.05)
    # ... and an exact-fp32 call waits until both have left
    c = threading.Thread(target=call, args=(False, "c", 0))
    c.start()
    for t in (a, b, c):
        t.join(10)
    assert events.index("c+") > max(events.index("a-"), events.index("b-")), events
    assert dict(seen) == {"a": ("tf32", "tf32"), "b": ("tf32", "tf32"), "c": ("ieee", "ieee")}


# -- CUDA ------------------------------------------------------------------------------------------------

@CUDA
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_reduced_precision_keeps_the_shrinkage_finite(net, precision):
    """|d| > 256 overflows d² in fp16 without the key-projection island; here it stays finite."""
    import copy
    big = copy.deepcopy(net)
    with torch.no_grad():
        big.key_proj.d_proj.weight.mul_(1e3)
    x = stage_inputs()["image"].cuda()
    ref = TorchBackend(Torch(device="cuda"), big).encode_key(x)
    got = TorchBackend(Torch(device="cuda", precision=precision), big).encode_key(x)
    assert ref[1].abs().max() > 256 ** 2, "the test needs a large d"
    for name, g, r in zip(("key", "shrinkage", "selection", "f16", "f8", "f4"), got, ref):
        assert g.dtype == torch.float32 and torch.isfinite(g).all(), name
        assert ((g - r).norm() / r.norm()) < 0.05, name


@CUDA
@pytest.mark.gpu
def test_cuda_fp32_is_exact_unless_tf32(net):
    """tf32=False: CUDA fp32 agrees with the CPU to fp32 rounding; the flags are restored after."""
    before = Fp32Mode.current()
    x = stage_inputs()["image"]
    cpu = TorchBackend(Torch(device="cpu"), net).encode_key(x)
    exact = TorchBackend(Torch(device="cuda"), net).encode_key(x.cuda())
    assert Fp32Mode.current() == before and not FP32_MODE._active
    for g, r in zip(exact, cpu):
        assert (g.cpu() - r).abs().max() <= 1e-3 * max(1.0, r.abs().max().item())
    fast = TorchBackend(Torch(device="cuda", tf32=True), net)
    assert fast.describe() == f"torch on {fast.device} (fp32, tf32)"
    out = fast.encode_key(x.cuda())
    assert all(torch.isfinite(o).all() for o in out)
