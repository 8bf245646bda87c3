"""Declared records: one dataclass per row kind and per summary that a command writes.

The lowest layer: it imports nothing else of softscope. Writers pass their values through `Type.of(...)` (or
build the dataclass), readers get typed records back from `engine.runs.read_records`; the docs' Records page and
its JSON Schemas are generated from these declarations (tools/gen_records_docs.py).
"""

from .base import (REGISTRY, Record, RecordError, all_records, declare, doc, dumps_schema, json_schema, record_type,
                   type_name, type_schema)
from .bias import (BiasData, BiasedExample, BiasMeasures, BiasRow, BiasSummary, Counterfactual, MakeDataSummary,
                   PositiveControl)
from .describe import BestDescription, CheckpointScores, Correlation, DescribeSummary, DescriptionRow
from .discrete import (CurvePoint, DiscreteRun, ExplainReading, ExplainSummary, Faithfulness, InterpretRecord,
                       RewardPoint, ScoresCache, Scrutability, SoftPromptFacts, SweepEntry, Thresholds, TradeoffRow,
                       TradeoffSummary, WeightSweepSummary)
from .runs import (CheckpointRow, EvalRow, EvalSummary, MetricsRow, PromptMeta, RunConfig, RunRecord, TrainSummary,
                   Truncated)
from .wayward import GammaStats, TargetResult, WaywardCompareRow, WaywardRow, WaywardSummary

__all__ = [n for n in dir() if not n.startswith("_")]
