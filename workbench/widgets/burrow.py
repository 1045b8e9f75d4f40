"""The Burrow-style evaluator moved to `workbench.sql.burrow` (the lag history records statuses
too); this name stays for code that imported it from here."""

from workbench.sql.burrow import SEVERITY, BurrowEvaluator, PartitionWindow

__all__ = ["SEVERITY", "BurrowEvaluator", "PartitionWindow"]
