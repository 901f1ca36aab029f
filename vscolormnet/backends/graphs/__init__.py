"""The six stage graphs as ONNX files: export, clean-up, fp16, checks against PyTorch, the checked cache.

Modules (import from them directly; this package never imports ``backends``, which imports it):

- ``trace``:    ``StageModule``, the ``traceable`` substitutions, ``export_graph`` (legacy exporter, opset 17);
- ``optimise``: value-info inference, constant folding, ``simplify``, ``topological_sort``;
- ``fp16``:     ``to_fp16`` and the parts it keeps in fp32;
- ``check``:    random/real inputs, ONNX Runtime sessions, ``check_graph`` and the tolerances;
- ``manifest``: the checksum sidecar that makes a cached file trustworthy (also used for engines);
- ``cache``:    the cache folder, file names, ``export_graphs``/``ensure_onnx``.

Stage names, inputs, outputs and shapes are ``vscolormnet.model.stages``.
"""
