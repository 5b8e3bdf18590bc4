"""Run on the Pi (Python 3.7+): what onnxruntime's Python API does with the numpy it imports.

Usage: python ort_numpy_probe.py MODEL.onnx. Prints one JSON object: versions, what the import
wrote to stderr (fd 2, where the C-API check prints), the pybind module's names, and the results
of the calls we and onnxruntime's API make with numpy arrays (digests of the outputs, so two
numpy versions can be compared exactly).
"""

import hashlib
import json
import os
import sys
import tempfile


def _import_onnxruntime():
    """Import onnxruntime with fd 2 captured; (module or None, error text, stderr text)."""
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            import onnxruntime

            error = None
        except Exception as exc:  # noqa: BLE001  (reported, not hidden)
            onnxruntime, error = None, repr(exc)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        return onnxruntime, error, sink.read().decode("utf-8", "replace")


def _digest(arrays):
    h = hashlib.sha256()
    for array in arrays:
        h.update(str(array.dtype).encode() + str(array.shape).encode() + array.tobytes())
    return h.hexdigest()[:16]


def _try(results, name, call):
    try:
        results[name] = call()
    except Exception as exc:  # noqa: BLE001  (what breaks is the measurement)
        results[name] = "ERROR " + repr(exc)[:300]


def main(model_path):
    import numpy as np

    ort, error, stderr = _import_onnxruntime()
    report = {"numpy": np.__version__, "import_error": error, "import_stderr": stderr}
    if ort is None:
        report["sys_path"] = sys.path
        print(json.dumps(report))
        return
    from onnxruntime.capi import _pybind_state as C

    report["onnxruntime"] = ort.__version__
    report["pybind_names"] = len([n for n in dir(C) if not n.startswith("_")])
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rng = np.random.RandomState(0)
    blob = rng.uniform(-120, 150, size=(1, 3, 96, 128)).astype(np.float32)
    results = report["calls"] = {}
    _try(results, "run float32", lambda: _digest(session.run(None, {name: blob})))
    _try(results, "output dtypes", lambda: [str(o.dtype) for o in session.run(None, {name: blob})])
    view = np.ascontiguousarray(blob.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    _try(results, "run non-contiguous view", lambda: _digest(session.run(None, {name: view})))
    _try(
        results, "run float64", lambda: _digest(session.run(None, {name: blob.astype(np.float64)}))
    )
    _try(results, "input shape", lambda: [str(d) for d in session.get_inputs()[0].shape])

    def ort_value():
        value = ort.OrtValue.ortvalue_from_numpy(blob)
        return [value.shape(), str(value.data_type()), _digest([value.numpy()])]

    _try(results, "OrtValue round trip", ort_value)

    def io_binding():
        binding = session.io_binding()
        binding.bind_cpu_input(name, blob)
        for output in session.get_outputs():
            binding.bind_output(output.name)
        session.run_with_iobinding(binding)
        return _digest(binding.copy_outputs_to_cpu())

    _try(results, "io_binding", io_binding)

    def int_values():
        out = []
        for dtype in (np.int64, np.int32, np.uint8, np.int8, np.bool_, np.float16):
            array = np.arange(6).astype(dtype).reshape(2, 3)
            out.append(str(ort.OrtValue.ortvalue_from_numpy(array).numpy().dtype))
        return out

    _try(results, "OrtValue dtypes", int_values)
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
