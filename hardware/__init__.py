"""The chip catalog: one YAML per chip (installed as the package `roofline_hardware`)."""
