"""The demo plugin is found by entry point, ships both demos, and they run as documented."""

from __future__ import annotations

import anyio
import pytest

from stepstream import Engine, InputError, StepFailedError, make_plugin_manager
from stepstream_demo import demo, demo_async
from stepstream_demo.pipelines import MAX_STEPS, step_names


def test_the_entry_point_offers_both_demos_through_register_pipelines() -> None:
    plugins = make_plugin_manager()
    assert plugins.origin("demo") == "stepstream-demo 0.1.0"
    offered = plugins.pipelines()
    assert offered["demo"] is demo
    assert offered["demo_async"] is demo_async
    assert offered.plugin("demo") == "demo"


@pytest.mark.parametrize("pipeline", [demo, demo_async])
@pytest.mark.parametrize("steps", [1, 3, 5])
def test_a_demo_runs_as_many_steps_as_asked_and_counts_every_item(pipeline, steps) -> None:
    outputs = pipeline.run(steps=steps, seconds_per_step=0.0, items_per_step=4)
    assert outputs == {"steps": steps, "items": steps * 4}


@pytest.mark.anyio
async def test_the_record_names_the_steps_as_the_api_reference_does() -> None:
    record = await Engine(load_entrypoints=False).run(demo, {"seconds_per_step": 0.0})
    assert record.status == "completed"
    assert [s.name for s in record.steps] == step_names(5)
    assert record.steps[2].name == "processing"
    assert all(s.items_done == 20 == s.items_total for s in record.steps)


@pytest.mark.parametrize("pipeline", [demo, demo_async])
def test_fail_at_step_fails_that_step_halfway(pipeline) -> None:
    with pytest.raises(StepFailedError, match=r"step 'validate'.*fail_at_step=1"):
        pipeline.run(steps=3, seconds_per_step=0.0, items_per_step=10, fail_at_step=1)


def test_the_number_of_steps_is_bounded() -> None:
    assert len(step_names(MAX_STEPS)) == MAX_STEPS
    with pytest.raises(Exception, match="steps"):
        demo.validate_inputs({"steps": MAX_STEPS + 1})


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"seconds_per_step": 1e9}, "seconds_per_step"),
        ({"items_per_step": 10**9}, "items_per_step"),
        ({"fail_at_step": MAX_STEPS}, "fail_at_step"),
    ],
)
def test_inputs_that_would_hold_a_slot_for_ages_are_refused(inputs, field) -> None:
    with pytest.raises(InputError) as refused:
        demo.validate_inputs(inputs)
    assert set(refused.value.problems) == {field}


@pytest.mark.anyio
@pytest.mark.parametrize("pipeline", [demo, demo_async])
async def test_a_cancel_stops_a_demo_in_the_middle_of_a_long_pause(pipeline) -> None:
    async with Engine(load_entrypoints=False) as engine:
        record = engine.submit(
            pipeline, {"steps": 1, "seconds_per_step": 3600, "items_per_step": 1}
        )
        with anyio.fail_after(20):
            while engine.get(record.execution_id).status != "running":
                await anyio.sleep(0.01)
            engine.cancel(record.execution_id)
            ended = await engine.wait(record.execution_id)
    assert ended.status == "cancelled"
    assert ended.error is None  # it stopped at a check, not by being abandoned
