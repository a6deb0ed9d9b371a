"""Reports that regulators and standards read, filled from measured figures: ``greenai report --format ...``.

How the pieces fit: :mod:`.facts` reads a run's price tag or a sweep's ledger (and its trials' price tags) once
into a :class:`~.facts.Project`: the training runs (every trial, failed and stopped ones included, the selected one
marked), each split into lifecycle activities (training, testing, inference) with their energy, interval, CO2e and
FLOPs. Each standard renders that one reading:

* :mod:`.eu_ai_act`: the AI Act's model documentation (Annex XI; the Code of Practice's Model Documentation Form):
  training compute beside the Commission guidelines' two estimators, time, hardware-days, energy in MWh with its
  methodology, inference FLOPs.
* :mod:`.sci`: the Software Carbon Intensity (ISO/IEC 21031:2024), ``(E x I + M) per R``.
* :mod:`.sbom`: a CycloneDX 1.6 ML-BOM and an SPDX 3.0.1 AI package, each activity with its energy and CO2e.

The registry of formats is :data:`lightning_greenai.reporting.checklists.FORMATS`; a field nothing measured says
:data:`~.facts.NOT_MEASURED`, never a guess.
"""
