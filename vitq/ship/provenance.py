"""Provenance of a release: an in-toto Statement v1 whose predicate is SLSA provenance v1.

Subjects are every file of the release with its sha256; the build definition is the resolved recipe (and its
sha256), the weight source (and a weights file's sha256) and the tool versions; the builder is vitq. Nothing
depends on where or when it ran: no path, no clock unless ``SOURCE_DATE_EPOCH`` is set (then both
timestamps are that instant). Checked with the in-toto attestation framework's own protobuf bindings.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from vitq import __version__
from vitq.errors import first_line

FILE = "provenance.intoto.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# What externalParameters/resolvedDependencies mean for a vitq build (README: "Provenance").
BUILD_TYPE = "urn:vitq:build-type:recipe:v1"
DEFAULT_BUILDER = "urn:vitq:builder:local"
BUILDER_ENV = "VITQ_BUILDER_ID"  # CI names itself, e.g. its workflow's URL


def statement(manifest: dict[str, Any], subjects: dict[str, str]) -> dict[str, Any]:
    """``subjects``: release file name (as in SHA256SUMS) -> sha256."""
    weights = manifest["weights"]
    fp32 = next(a for a in manifest["artifacts"] if a["name"] == "fp32")
    weights_dependency = {
        "name": "weights", "uri": weights["uri"],
        "digest": {"sha256": weights.get("sha256", fp32["sha256"])},
        # No weights file of the user's: the digest is of the float weights as built (fp32 in subjects).
        "annotations": {"source": weights["source"], "digestOf": "weights file" if "sha256" in weights else fp32["path"]},
    }
    tools = [{"uri": _purl(name, version)} for name, version in sorted(manifest["versions"].items())
             if name not in ("python", "vitq")]
    run_details: dict[str, Any] = {
        "builder": {"id": os.environ.get(BUILDER_ENV) or DEFAULT_BUILDER, "version": {"vitq": __version__}},
    }
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        instant = datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        run_details["metadata"] = {"startedOn": instant, "finishedOn": instant}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(subjects.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"recipe": {k: manifest["recipe"][k] for k in ("name", "version", "sha256", "resolved")}},
                "internalParameters": {"python": manifest["versions"]["python"], "PYTHONHASHSEED": "0"},
                "resolvedDependencies": [weights_dependency, *tools],
            },
            "runDetails": run_details,
        },
    }


def problems(data: Any) -> list[str]:
    """Why ``data`` is not a valid in-toto Statement v1 with a SLSA provenance v1 predicate (empty: it is).

    The JSON is parsed into the framework's protobuf messages (unknown or mistyped fields fail), then its
    validators run, then the fields SLSA v1 requires are checked."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
    from in_toto_attestation.v1.statement import Statement

    try:
        proto = json_format.ParseDict(data, statement_pb2.Statement())
        Statement.copy_from_pb(proto).validate()
        predicate = json_format.ParseDict(data.get("predicate", {}), provenance_pb2.Provenance())
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        return [f"not an in-toto Statement v1: {first_line(exc)}"]
    found = []
    if proto.predicate_type != PREDICATE_TYPE:
        found.append(f"predicateType is {proto.predicate_type!r}, expected {PREDICATE_TYPE}")
    for i, subject in enumerate(proto.subject):
        if not subject.name or "sha256" not in subject.digest:
            found.append(f"subject {i}: needs a name and a sha256 digest")
    definition, run = predicate.build_definition, predicate.run_details
    if not definition.build_type:
        found.append("predicate.buildDefinition.buildType is required")
    if not definition.HasField("external_parameters"):
        found.append("predicate.buildDefinition.externalParameters is required")
    if not run.builder.id:
        found.append("predicate.runDetails.builder.id is required")
    for i, dependency in enumerate(definition.resolved_dependencies):
        try:
            ResourceDescriptor.copy_from_pb(dependency).validate()
        except ValueError as exc:
            found.append(f"resolvedDependencies {i}: {exc}")
    return found


def _purl(name: str, version: str) -> str:
    return f"pkg:pypi/{name.lower()}@{version}"
