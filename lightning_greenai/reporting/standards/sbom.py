"""Energy in bills of materials: a CycloneDX 1.6 ML-BOM and an SPDX 3.0.1 document, each activity measured.

CycloneDX keeps it in ``modelCard.considerations.environmentalConsiderations.energyConsumptions[]`` (activity,
energy providers, energy cost in kWh, CO2 cost in tCO2eq); SPDX's AI profile in the package's ``ai_energyConsumption``
(training, fine-tuning and inference quantities in kWh), with each activity's CO2e in an annotation (SPDX has no
field for it). Energies are drawn from the grid (metered x PUE), as the CO2e is priced. An activity nothing measured
is left out of the lists (both formats require a number) and named "not measured" beside them; so is a CO2 offset,
which nothing here measures. The run's testing (its test stage) is CycloneDX's ``validation`` and, as SPDX has
only three activities, part of SPDX's inference.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from importlib import metadata
from typing import Any

from lightning_greenai.reporting.standards.facts import NOT_MEASURED, TESTING, Activity, Project, TrainingRun
from lightning_greenai.units import g_to_kg, g_to_t, j_to_kwh

__all__ = ["CYCLONEDX_ACTIVITY", "SPDX_ACTIVITY", "render_cyclonedx", "render_spdx", "to_cyclonedx", "to_spdx"]

#: Our activity -> CycloneDX's ``energyConsumption.activity``.
CYCLONEDX_ACTIVITY = {
    "training": "training",
    "fine-tuning": "fine-tuning",
    TESTING: "validation",
    "inference": "inference",
}
#: Our activity -> SPDX's ``ai_EnergyConsumption`` property.
SPDX_ACTIVITY = {
    "training": "ai_trainingEnergyConsumption",
    "fine-tuning": "ai_finetuningEnergyConsumption",
    TESTING: "ai_inferenceEnergyConsumption",
    "inference": "ai_inferenceEnergyConsumption",
}
_PREFIX = "lightning-greenai"


def _version() -> str:
    try:
        return metadata.version("lightning-greenai")
    except metadata.PackageNotFoundError:
        return "unknown"


def _serial(project: Project) -> uuid.UUID:
    """The same report of the same figures gets the same id."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{_PREFIX}:{project.path.resolve()}:{project.created.isoformat()}")


def _created(project: Project) -> str:
    return project.created.strftime("%Y-%m-%dT%H:%M:%SZ")


def _location(project: Project) -> str:
    grid = project.grid
    return grid.region or grid.country or "unknown (the table's world mean)"


def _entries(project: Project) -> list[tuple[TrainingRun, Activity]]:
    return [(r, a) for r in project.runs for a in r.activities]


def _not_measured(project: Project) -> list[str]:
    """The activities of the lifecycle nothing measured, in our names."""
    found = {a.name for _, a in _entries(project)}
    return [name for name in (project.training_name, TESTING, "inference") if name not in found]


def _property(name: str, value: Any) -> dict[str, str]:
    return {"name": f"{_PREFIX}:{name}", "value": str(value)}


def _run_properties(project: Project, run: TrainingRun, activity: Activity) -> list[dict[str, str]]:
    props = [
        _property("run", run.label),
        _property("status", run.status),
        _property("selected", str(run.selected).lower()),
    ]
    props.append(_property("stages", ", ".join(activity.stages) or "all (no split by stage)"))
    props.append(_property("metered_energy_kwh", f"{j_to_kwh(activity.energy_j):.6g}"))
    if activity.bounds_j is not None:
        low, high = (j_to_kwh(b) * project.grid.pue for b in activity.bounds_j)
        props.append(_property("energy_kwh_interval", f"{low:.6g} to {high:.6g}"))
    props.append(_property("pue", f"{project.grid.pue:g}"))
    props.append(_property("co2CostOffset", NOT_MEASURED))
    return props


def _energy_consumption(project: Project, run: TrainingRun, activity: Activity) -> dict[str, Any]:
    grid = project.grid
    intensity, source = grid.intensity_text(run.spend, unit="gCO2e/kWh")
    energy = {"value": float(f"{activity.facility_kwh:.6g}"), "unit": "kWh"}
    return {
        "activity": CYCLONEDX_ACTIVITY[activity.name],
        "energyProviders": [
            {
                "description": f"the electricity grid at {_location(project)}: {intensity} ({source})",
                "organization": {"name": f"electricity grid ({_location(project)})"},
                "energySource": "unknown",  # the grid's mix, not one source
                "energyProvided": energy,
            }
        ],
        "activityEnergyCost": energy,
        "co2CostEquivalent": {"value": float(f"{g_to_t(activity.co2e_g):.6g}"), "unit": "tCO2eq"},
        "properties": _run_properties(project, run, activity),
    }


def to_cyclonedx(project: Project) -> dict[str, Any]:
    """A CycloneDX 1.6 BOM with one machine-learning-model component whose model card carries the energy."""
    serial = _serial(project)
    methods = ", ".join(f"{k} ({m.value})" for k, m in sorted(project.total.methods.items())) or NOT_MEASURED
    considerations = [_property(f"{name}.energy", NOT_MEASURED) for name in _not_measured(project)]
    considerations += [
        _property("energy_measurement", methods),
        _property("total_energy_kwh", f"{project.grid.facility_energy_kwh(project.total) or 0.0:.6g}"),
        _property("co2CostOffset", NOT_MEASURED),
        *(_property("note", note) for note in project.notes),
    ]
    name = project.path.name if project.path.is_dir() else project.path.parent.name
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial.urn,
        "version": 1,
        "metadata": {
            "timestamp": _created(project),
            "tools": {"components": [{"type": "application", "name": _PREFIX, "version": _version()}]},
        },
        "components": [
            {
                "type": "machine-learning-model",
                "bom-ref": f"{_PREFIX}:model",
                "name": name or "model",
                "description": f"the model of a {project.kind} measured by lightning-greenai ({project.path})",
                "modelCard": {
                    "considerations": {
                        "environmentalConsiderations": {
                            "energyConsumptions": [_energy_consumption(project, r, a) for r, a in _entries(project)],
                            "properties": considerations,
                        }
                    }
                },
            }
        ],
    }


def _decimal(value: float) -> str:
    """``value`` as xsd:decimal text (no exponent), 6 significant figures."""
    return format(Decimal(f"{value:.6g}"), "f")


def _annotation(base: str, index: int, project: Project, run: TrainingRun, activity: Activity) -> dict[str, Any]:
    interval = ""
    if activity.bounds_j is not None:
        low, high = (j_to_kwh(b) * project.grid.pue for b in activity.bounds_j)
        interval = f" (interval {low:.6g} to {high:.6g} kWh)"
    return {
        "type": "Annotation",
        "spdxId": f"{base}#energy-{index}",
        "creationInfo": "_:creationinfo",
        "annotationType": "other",
        "subject": f"{base}#model",
        "statement": (
            f"{activity.name} of {run.label} ({run.status}{', the selected model' if run.selected else ''}; stages "
            f"{', '.join(activity.stages) or 'all'}): {activity.facility_kwh:.6g} kWh{interval} at PUE "
            f"{project.grid.pue:g}; {g_to_kg(activity.co2e_g):.6g} kgCO2e ({_location(project)}); CO2 offset "
            f"{NOT_MEASURED}"
        ),
    }


def to_spdx(project: Project) -> dict[str, Any]:
    """An SPDX 3.0.1 JSON-LD document: one AI package with its energy by activity, an annotation per figure."""
    base = f"https://spdx.org/spdxdocs/{_PREFIX}-{_serial(project)}"
    consumption: dict[str, Any] = {"type": "ai_EnergyConsumption"}
    annotations = []
    for i, (run, activity) in enumerate(_entries(project)):
        key = SPDX_ACTIVITY[activity.name]
        consumption.setdefault(key, []).append(
            {
                "type": "ai_EnergyConsumptionDescription",
                "ai_energyQuantity": _decimal(activity.facility_kwh),
                "ai_energyUnit": "kilowattHour",
            }
        )
        annotations.append(_annotation(base, i, project, run, activity))
    missing = ", ".join(_not_measured(project)) or "none"
    package: dict[str, Any] = {
        "type": "ai_AIPackage",
        "spdxId": f"{base}#model",
        "creationInfo": "_:creationinfo",
        "name": (project.path.name if project.path.is_dir() else project.path.parent.name) or "model",
        "software_primaryPurpose": "model",
        "ai_energyConsumption": consumption,
        "comment": (
            f"Energy drawn from the grid (metered x PUE {project.grid.pue:g}) by activity, measured by lightning-"
            f"greenai; one entry per training run ({len(project.runs)}); testing counts as inference; "
            f"{NOT_MEASURED}: {missing}." + "".join(f" Note: {note}." for note in project.notes)
        ),
    }
    agent = {"type": "SoftwareAgent", "spdxId": f"{base}#agent", "creationInfo": "_:creationinfo", "name": _PREFIX}
    tool = {
        "type": "Tool",
        "spdxId": f"{base}#tool",
        "creationInfo": "_:creationinfo",
        "name": f"{_PREFIX} {_version()}",
    }
    elements = [package, agent, tool, *annotations]
    document = {
        "type": "SpdxDocument",
        "spdxId": f"{base}#document",
        "creationInfo": "_:creationinfo",
        "name": f"energy of {package['name']}",
        "rootElement": [package["spdxId"]],
        "element": [e["spdxId"] for e in elements],
    }
    creation = {
        "type": "CreationInfo",
        "@id": "_:creationinfo",
        "specVersion": "3.0.1",
        "created": _created(project),
        "createdBy": [agent["spdxId"]],
        "createdUsing": [tool["spdxId"]],
    }
    return {"@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld", "@graph": [creation, document, *elements]}


def render_cyclonedx(project: Project) -> str:
    """:func:`to_cyclonedx` as indented JSON."""
    return json.dumps(to_cyclonedx(project), indent=2)


def render_spdx(project: Project) -> str:
    """:func:`to_spdx` as indented JSON."""
    return json.dumps(to_spdx(project), indent=2)
