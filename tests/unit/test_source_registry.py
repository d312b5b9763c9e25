"""The source registry is the one list of sources and objects: every consumer derives from it, and a fifth
source is one client module plus one registry entry (README, "Adding a source")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from healthscore.config import load_model_config
from healthscore.local_airflow import DAGS_FOLDER
from healthscore.pipeline import extract
from healthscore.quality import policy, suites
from healthscore.sources import client_class, registry, schemas
from healthscore.sources.registry import ObjectSpec, SourceSpec
from healthscore.warehouse import models, pointintime


def test_every_consumer_lists_exactly_the_registered_objects():
    assert registry.landing_objects() == models.LANDING_OBJECTS
    assert set(models.LANDING_MODELS) == set(registry.landing_objects())
    assert registry.source_dimensions() == policy.SOURCE_DIMENSIONS
    assert {key for key in registry.landing_objects() if pointintime.is_snapshot(*key)} == registry.snapshot_objects()
    assert set(schemas.OBJECTS) == set(registry.quality_objects())
    assert set(suites.CHECKS) == set(suites.FRESHNESS) == set(registry.quality_objects())
    assert registry.source("mixpanel").object("events").window_days == extract.MIXPANEL_TRAILING_DAYS
    for spec in registry.sources():
        cls = client_class(spec.name)
        assert cls.name == spec.name
        assert list(cls.objects) == [o.name for o in spec.extracted_objects]
        for obj in spec.extracted_objects:
            assert (cls.objects[obj.name].id_field, cls.objects[obj.name].updated_field) == (obj.id_field,
                                                                                             obj.updated_field)
        assert not hasattr(cls, "default_conn_id"), "the connection id lives in the registry only"


def test_each_source_feeds_the_dimensions_of_the_signals_it_declares():
    model = load_model_config()
    dimension_of = {sig: dim for dim, spec in model.dimensions.items() for sig in spec.signals}
    fed: set[str] = set()
    for spec in registry.sources():
        assert set(spec.signals) <= set(dimension_of), f"{spec.name} names signals the model does not have"
        assert {dimension_of[s] for s in spec.signals} == set(spec.dimensions), spec.name
        fed |= set(spec.signals)
    assert fed == set(dimension_of), "every signal of the model comes from some source"


def test_the_computations_return_exactly_the_signals_the_registry_declares():
    """The registry is the list of signals (models are checked against it at load); compute_signals must
    return each of them, and nothing else, even for a batch without any account or record."""
    from healthscore.pipeline.signals import COMPUTED_SIGNALS, READS
    from healthscore.signals import SignalInputs, compute_signals, hubspot
    from healthscore.sources.schemas import flatten
    from tests.unit.signal_frames import PIT

    accounts = flatten("hubspot", "companies", [])
    accounts["zendesk_org"] = pd.array([], dtype="str")
    accounts["stripe_customer"] = pd.array([], dtype="str")
    inputs = SignalInputs(hubspot.active_accounts(accounts), {f"{s}.{o}": flatten(s, o, []) for s, o in READS})
    assert set(compute_signals(inputs, PIT)) == registry.signal_ids() == COMPUTED_SIGNALS
    assert len(registry.signal_ids()) == 22


def test_declarations_are_checked():
    obj = ObjectSpec("things", "incremental", "newest id")
    with pytest.raises(ValueError, match="mode 'sometimes'"):
        ObjectSpec("things", "sometimes", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window_days"):
        ObjectSpec("things", "windowed", "x")
    with pytest.raises(ValueError, match="cursor_object 'other'"):
        SourceSpec("toy", "toy:Toy", "toy", "toy_api", (obj,), ("usage",), (), cursor_object="other")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.source("hubspot"))
    with pytest.raises(KeyError, match="registered: hubspot, zendesk, stripe, mixpanel"):
        registry.source("salesforce")


TOY_MODULE = '''
"""A survey tool: the fifth source of the README's "Adding a source", served from memory."""
from collections.abc import Iterator
from typing import ClassVar

from healthscore.sources.base import Page, Source, SourceObject, source_objects
from healthscore.sources.schemas import C, ObjectSchema

RESPONSES = [{"id": f"r{i}", "company": "c1", "score": i, "answered_at": 1789000000 + i} for i in range(5)]


class SurveySource(Source):
    name = "survey"
    objects: ClassVar[dict[str, SourceObject]] = source_objects("survey")

    def pages(self, obj: str, cursor: str | None = None) -> Iterator[Page]:
        records = [r for r in RESPONSES if cursor is None or r["answered_at"] > int(cursor)]
        yield Page(records, str(max(r["answered_at"] for r in RESPONSES)))


SCHEMAS = (ObjectSchema("survey", "responses", ("id",), (
    C("company_id", "company", required=True), C("score", parse="int"),
    C("answered_ts", "answered_at", parse="epoch"))),)
'''

TOY_RUN = '''
import json, sys
from datetime import UTC, date, datetime
from pathlib import Path

from healthscore.sources import registry
from healthscore.sources.registry import ObjectSpec, SourceSpec

registry.register(SourceSpec(
    name="survey", client="toy_survey:SurveySource", conn_id="survey_tool", pool="survey_api",
    objects=(ObjectSpec("responses", "incremental", "newest answered_at (epoch s)", updated_field="answered_at"),),
    dimensions=("relationship",), signals=(), cursor_object="responses", references=("hubspot",)))

from airflow.dag_processing.dagbag import DagBag
from healthscore.pipeline import signals
from healthscore.pipeline.extract import Batch, extract_source
from healthscore.pipeline.validate import QualityPaths, validate_source
from healthscore.quality.policy import dimensions_fed_by
from healthscore.sources import SourceConnection
from healthscore.warehouse import make_engine, upgrade
from healthscore.warehouse.models import LANDING_MODELS, LANDING_OBJECTS

tmp = Path(sys.argv[2])
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags["customer_health_daily"]
tasks = {t.task_id: {"pool": t.pool, "upstream": sorted(t.upstream_task_ids)} for t in dag.tasks}

url = f"sqlite:///{tmp / 'warehouse.db'}"
upgrade(url)
engine = make_engine(url)
LANDING_MODELS[("survey", "responses")].__table__.create(engine)  # what the new source's migration creates
batch = Batch(date(2026, 9, 19), datetime(2026, 9, 20, tzinfo=UTC), "toy-run")
summaries = extract_source("survey", SourceConnection("survey_tool", "http://survey.invalid"), engine, batch)
verdict = validate_source("survey", engine, batch, QualityPaths.under(tmp / "data"))
with engine.connect() as conn:
    statuses = signals.source_statuses(conn, batch.batch_date)
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()}, "tasks": tasks,
    "landing": [list(k) for k in LANDING_OBJECTS], "dimensions": list(dimensions_fed_by("survey")),
    "cursor_objects": registry.cursor_objects(),
    "extracted": [(s.object, s.records, s.end_cursor) for s in summaries],
    "validated": [(v["suite"], v["landed"], v["accepted"], v["critical_failed"]) for v in verdict],
    "survey_usable": statuses["survey"].usable,
}))
'''


def test_a_fifth_source_is_one_module_and_one_registry_entry(tmp_path: Path):
    """A toy survey source registered before the consumers are imported: the DAG grows its tasks, the
    warehouse its landing table, the policy its dimensions, and it is extracted, validated and counted
    as landed by the same code as the four vendors."""
    (tmp_path / "toy_survey.py").write_text(textwrap.dedent(TOY_MODULE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "HEALTHSCORE_"))}
    env.update({"AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW_HOME": str(tmp_path / "airflow"),
                "GX_ANALYTICS_ENABLED": "false",
                "PYTHONPATH": os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    out = subprocess.run([sys.executable, "-c", TOY_RUN, str(DAGS_FOLDER), str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    tasks = info["tasks"]
    assert tasks["extract_survey"] == {"pool": "survey_api", "upstream": ["prepare_warehouse"]}
    assert tasks["validate_survey"]["upstream"] == ["extract_hubspot", "extract_survey"]  # references the CRM
    assert "validate_survey" in tasks["build_signals"]["upstream"]
    assert ["survey", "responses"] in info["landing"]
    assert info["dimensions"] == ["relationship"]
    assert info["cursor_objects"]["survey"] == "responses"
    assert info["extracted"] == [["responses", 5, "1789000004"]]
    assert info["validated"] == [["survey.responses", 5, 5, False]]
    assert info["survey_usable"] is True
