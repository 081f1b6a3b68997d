"""Stage 1, spec: project folders in, a frozen model out.

Enters: a project folder (`project.yaml`, `tables/*.yaml`, `backfills/*.yaml`, SQL templates).
Leaves: `model.Project` (tables, backfills, params), or every `SpecError` at once with file:line:col.
Here: YAML with node positions (`yamlpos`), JSON Schema checks (`schema_check`), the loader
(`loader`), data timestamps (`timestamps`), the frozen dataclasses (`model`), shipped schemas and tutorial (`resources`,
`tutorial`). Imports nothing else of the package but `errors`.
"""
