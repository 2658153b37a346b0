"""What can be checked of a Core ML export without running it: its spec, read from the package.

`check_spec(out)` is the report card's `spec` section wherever Core ML cannot predict (every
platform but macOS): the inputs with their dtypes and shape ranges, the outputs, the spec
version and the deployment target it implies, a histogram of the MIL program's ops, the
weight-compression ops (`constexpr_*`) and the size, each with a pass/fail check.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgeai.converters.manifest import folder_size

# specificationVersion -> the oldest OS that runs the package
DEPLOYMENT = {6: "macOS12/iOS15", 7: "macOS13/iOS16", 8: "macOS14/iOS17", 9: "macOS15/iOS18"}
TOP_OPS = 12


def _array(feature) -> dict:
    from coremltools.proto import FeatureTypes_pb2

    array = feature.type.multiArrayType
    entry = {"name": feature.name,
             "dtype": FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType),
             "shape": [int(d) for d in array.shape]}
    if array.HasField("shapeRange"):
        entry["ranges"] = [[int(r.lowerBound), int(r.upperBound)] for r in array.shapeRange.sizeRanges]
    return entry


def op_histogram(spec) -> Counter:
    """Every op of every function of the mlprogram, nested blocks included."""
    counts: Counter = Counter()

    def walk(block) -> None:
        for op in block.operations:
            counts[op.type] += 1
            for inner in op.blocks:
                walk(inner)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            walk(block)
    return counts


def summarize(package: Path) -> dict:
    """The package's spec as plain data (no checks)."""
    from edgeai.runtime.coreml import import_coremltools

    ct = import_coremltools()
    spec = ct.utils.load_spec(str(package))
    ops = op_histogram(spec)
    version = int(spec.specificationVersion)
    return {
        "package": package.name,
        "size_bytes": folder_size(package),
        "model_type": spec.WhichOneof("Type"),
        "specification_version": version,
        "deployment_target": DEPLOYMENT.get(version, f"specification version {version}"),
        "inputs": [_array(f) for f in spec.description.input],
        "outputs": [_array(f) for f in spec.description.output],
        "ops_total": sum(ops.values()),
        "top_ops": dict(Counter({k: v for k, v in ops.items() if k != "const"}).most_common(TOP_OPS)),
        "compression_ops": {k: v for k, v in sorted(ops.items()) if k.startswith("constexpr_")},
        "metadata": dict(spec.description.metadata.userDefined),
    }


def _flexible(entry: dict | None) -> bool:
    """The sequence axis accepts 1 (or 2, padded) up to a useful length."""
    ranges = (entry or {}).get("ranges")
    return bool(ranges) and ranges[-1][0] <= 2 and (ranges[-1][1] == -1 or ranges[-1][1] >= 64)


def check_spec(out: Path) -> dict:
    """The summary of OUT's package plus a boolean per check and `passed` (all of them)."""
    from edgeai.runtime.coreml import find_package

    summary = summarize(find_package(Path(out)))
    inputs = {i["name"]: i for i in summary["inputs"]}
    outputs = {o["name"]: o for o in summary["outputs"]}
    quant = summary["metadata"].get("edgeai.quant")
    compressed = sum(summary["compression_ops"].values())
    checks = {
        "is_mlprogram": summary["model_type"] == "mlProgram",
        "input_ids_present": inputs.get("input_ids", {}).get("dtype") == "INT32",
        "logits_output": "logits" in outputs,
        "flexible_sequence_length": _flexible(inputs.get("input_ids")),
        "deployment_target_known": summary["specification_version"] in DEPLOYMENT,
    }
    if quant is not None:  # fp16 must be uncompressed; every other quant must have compressed something
        checks["compression_as_requested"] = (compressed == 0) if quant == "fp16" else compressed > 0
    return {**summary, "quant": quant, "checks": checks, "passed": all(checks.values())}
