"""hwq.workloads: reference models and data sets (generated or bundled; nothing downloaded)."""
