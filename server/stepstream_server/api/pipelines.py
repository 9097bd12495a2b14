"""`/api/v1/pipelines`: what can be run and with which inputs."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from stepstream import Engine

from ..problems import problem_spec
from ..schemas import PipelineInfo, PipelineList
from ..submissions import unknown_pipeline


class PipelineController(Controller):
    """`/api/v1/pipelines`: what can be run and with which inputs."""

    path = "/pipelines"
    tags = ("pipelines",)

    @get("/", summary="List pipelines")
    async def list_pipelines(self, engine: NamedDependency[Engine]) -> PipelineList:
        """Every registered pipeline, by name."""
        pipelines = engine.pipelines
        return PipelineList(items=[PipelineInfo.of(pipelines[name]) for name in sorted(pipelines)])

    @get(
        "/{name:str}",
        summary="Get a pipeline",
        responses={404: problem_spec("No pipeline has this name")},
    )
    async def get_pipeline(
        self, engine: NamedDependency[Engine], name: FromPath[str]
    ) -> PipelineInfo:
        """One pipeline: description, steps and the JSON Schema of its inputs."""
        try:
            return PipelineInfo.of(engine.pipeline(name))
        except KeyError:
            raise unknown_pipeline(engine, name) from None
