"""The built-in `echo` provisioner: plays a script instead of provisioning anything.

The script is `provd-echo.json` at the root of the job's template source
(docs/echo.md; parsed by `echo_spec`): stages of log lines with delays, what an
import declares (variables, readme, parameters, resources), what a build returns
(resources, state, a daily cost to commit) and whether the job fails. Without the
file, a job gets a short default run that succeeds.

Every wait is a `trio.sleep`, so cancelling the call (the daemon does when provd
says the job was canceled) stops the run at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import trio
from connectrpc.errors import ConnectError

from provd.client.daemon.echo_spec import (
    SPEC_FILE,
    BuildPlan,
    DryRunPlan,
    EchoSpec,
    Failure,
    ImportPlan,
    SpecError,
    Stage,
    load_spec,
)
from provd.client.daemon.provisioners import JobFailed, Provisioner
from provd.client.daemon.reporting import JobReporter
from provd.error_reasons import reason_of
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.protocol import JobErrorCode

INVALID_SPEC = "INVALID_ECHO_SPEC"
INSUFFICIENT_QUOTA = "INSUFFICIENT_QUOTA"
_TRANSITIONS = {sdk.START: "start", sdk.STOP: "stop", sdk.DESTROY: "destroy"}
_HIDDEN = "(sensitive)"


async def run_echo(job: pd.AcquiredJob, reporter: JobReporter) -> pd.CompletedJob:
    """Run `job` as its provd-echo.json says; raises JobFailed to fail it."""
    return await _EchoRun(job, reporter, time_scale=1.0).run()


def echo_provisioner(*, time_scale: float = 1.0) -> Provisioner:
    """`run_echo` with every delay multiplied by `time_scale` (0: no waiting)."""

    async def run(job: pd.AcquiredJob, reporter: JobReporter) -> pd.CompletedJob:
        return await _EchoRun(job, reporter, time_scale=time_scale).run()

    return run


class _EchoRun:
    def __init__(self, job: pd.AcquiredJob, reporter: JobReporter, *, time_scale: float) -> None:
        self.job = job
        self.reporter = reporter
        self.time_scale = time_scale
        self.stage = "Setting up"

    def log(self, output: str, level: sdk.LogLevel = sdk.INFO) -> None:
        self.reporter.log(output, stage=self.stage, level=level)

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds * self.time_scale)

    async def run(self) -> pd.CompletedJob:
        kind = self.job.WhichOneof("type")
        self.log(self._headline(kind))
        spec = self._load_spec()
        if kind == "template_import":
            return await self._template_import(spec.template_import)
        if kind == "workspace_build":
            return await self._workspace_build(spec)
        if kind == "template_dry_run":
            return await self._template_dry_run(spec.template_dry_run)
        raise JobFailed(f"echo: job {self.job.job_id} has no type")

    def _headline(self, kind: str | None) -> str:
        what = kind.replace("_", " ") if kind else "untyped"
        line = f"echo: running the {what} job {self.job.job_id}"
        if kind == "workspace_build":
            build = self.job.workspace_build
            transition = _TRANSITIONS.get(build.metadata.workspace_transition, "unknown")
            line += f" for workspace {build.workspace_name!r}, transition {transition}"
        if self.job.user_name:
            line += f", started by {self.job.user_name}"
        return line

    def _load_spec(self) -> EchoSpec:
        try:
            spec = load_spec(self.job.template_source_archive)
        except SpecError as error:
            self.log(str(error), sdk.ERROR)
            raise JobFailed(str(error), INVALID_SPEC) from None
        if not spec.found:
            self.log(f"No {SPEC_FILE} in the template source: a default run (see docs/echo.md)")
        else:
            self.log(
                f"Following {SPEC_FILE}" + (f": {spec.description}" if spec.description else "")
            )
        return spec

    # -- job types ---------------------------------------------------------------

    async def _template_import(self, plan: ImportPlan) -> pd.CompletedJob:
        given = self.job.template_import.user_variable_values
        await self._play(plan.stages, plan.fail)
        self.stage = "Template variables"
        if plan.variables:
            names = ", ".join(variable.name for variable in plan.variables)
            self.log(f"Declaring {_count(plan.variables, 'template variable')}: {names}")
        try:
            answer = await self.reporter.update(
                template_variables=plan.variables,
                user_variable_values=list(given),
                readme=plan.readme,
            )
        except ConnectError as error:
            if reason_of(error) is JobErrorCode.REQUIRED_TEMPLATE_VARIABLES:
                self.log(error.message, sdk.ERROR)
                raise JobFailed(error.message, JobErrorCode.REQUIRED_TEMPLATE_VARIABLES) from None
            raise
        hidden = {v.name for v in (*plan.variables, *given) if v.sensitive}
        self._log_values("variable", answer.variable_values, hidden)
        if plan.readme:
            self.log(f"README: {len(plan.readme)} bytes")
        self._done(
            f"{_count(plan.start_resources, 'start resource')},"
            f" {_count(plan.stop_resources, 'stop resource')},"
            f" {_count(plan.parameters, 'rich parameter')},"
            f" {_count(plan.external_auth, 'external auth provider')}"
        )
        return pd.CompletedJob(
            job_id=self.job.job_id,
            template_import=pd.CompletedJob.TemplateImport(
                start_resources=plan.start_resources,
                stop_resources=plan.stop_resources,
                rich_parameters=plan.parameters,
                external_auth_providers_names=[provider.id for provider in plan.external_auth],
                external_auth_providers=plan.external_auth,
            ),
        )

    async def _workspace_build(self, spec: EchoSpec) -> pd.CompletedJob:
        build = self.job.workspace_build
        transition = _TRANSITIONS.get(build.metadata.workspace_transition)
        if transition is None:
            error = f"unknown workspace transition {build.metadata.workspace_transition}"
            raise JobFailed(error, state=build.state)
        plan: BuildPlan = spec.workspace_build[transition]
        self._log_inputs(build.rich_parameter_values, build.variable_values)
        for provider in build.external_auth_providers:
            token = "with a token" if provider.access_token else "without a token"
            self.log(f"external auth {provider.id}: {token}")
        await self._play(plan.stages, plan.fail, state=build.state)
        if plan.cost is not None or plan.daily_cost > 0:
            await self._commit_quota(plan.daily_cost)
        state = plan.state if plan.state is not None else _next_state(build, transition, plan)
        self._done(f"{_count(plan.resources, 'resource')}, new state of {len(state)} bytes")
        return pd.CompletedJob(
            job_id=self.job.job_id,
            workspace_build=pd.CompletedJob.WorkspaceBuild(state=state, resources=plan.resources),
        )

    async def _template_dry_run(self, plan: DryRunPlan) -> pd.CompletedJob:
        dry_run = self.job.template_dry_run
        self._log_inputs(dry_run.rich_parameter_values, dry_run.variable_values)
        await self._play(plan.stages, plan.fail)
        self._done(_count(plan.resources, "resource"))
        return pd.CompletedJob(
            job_id=self.job.job_id,
            template_dry_run=pd.CompletedJob.TemplateDryRun(resources=plan.resources),
        )

    # -- pieces ------------------------------------------------------------------

    async def _play(
        self, stages: Sequence[Stage], fail: Failure | None, *, state: bytes = b""
    ) -> None:
        """The stages, then the failure if there is one (a build keeps `state`)."""
        for stage in stages:
            await self._stage(stage)
        if fail is not None:
            self.stage = fail.stage or (stages[-1].name if stages else "Error")
            self.log(fail.error, sdk.ERROR)
            raise JobFailed(fail.error, fail.error_code, state)

    async def _stage(self, stage: Stage) -> None:
        self.stage = stage.name
        await self.sleep(stage.delay)
        for line in stage.lines:
            await self.sleep(stage.line_delay if line.delay is None else line.delay)
            self.log(line.output, line.level)
        if stage.wait is not None:
            for step, elapsed in _steps(stage.wait.seconds, stage.wait.step):
                await self.sleep(step)
                if stage.wait.output:
                    self.log(stage.wait.render(elapsed), stage.wait.level)
        await self.sleep(stage.after)

    async def _commit_quota(self, cost: int) -> None:
        """Fails the job (keeping the build's state) when provd refuses the cost."""
        self.stage = "Committing quota"
        if not self.job.workspace_build.metadata.workspace_id:
            self.log(
                f"Not committing a daily cost of {cost}: the build has no workspace id", sdk.WARN
            )
            return
        self.log(f"Committing a daily cost of {cost} credits")
        answer = await self.reporter.commit_quota(cost)
        consumed, budget = answer.credits_consumed, answer.budget
        if not answer.ok:
            error = (
                f"insufficient quota: this build costs {cost} credits a day, and"
                f" {consumed} credits of a budget of {budget} are already consumed"
            )
            self.log(error, sdk.ERROR)
            raise JobFailed(error, INSUFFICIENT_QUOTA, self.job.workspace_build.state)
        if budget < 0:
            self.log("No quota is configured: the cost is recorded")
        else:
            self.log(f"Within quota: {consumed} of {budget} credits consumed")

    def _log_inputs(
        self,
        parameters: Iterable[sdk.RichParameterValue],
        variables: Iterable[sdk.VariableValue],
    ) -> None:
        for parameter in parameters:
            self.log(f"parameter {parameter.name} = {parameter.value!r}")
        self._log_values("variable", variables, set())

    def _log_values(self, what: str, values: Iterable[sdk.VariableValue], hidden: set[str]) -> None:
        for value in values:
            shown = _HIDDEN if value.sensitive or value.name in hidden else repr(value.value)
            self.log(f"{what} {value.name} = {shown}")

    def _done(self, summary: str) -> None:
        self.stage = "Done"
        self.log(f"Succeeded: {summary}")


def _steps(seconds: float, step: float) -> list[tuple[float, float]]:
    """(sleep, elapsed after it) for each step of a wait."""
    steps: list[tuple[float, float]] = []
    elapsed = 0.0
    while seconds - elapsed > 1e-9:
        length = min(step, seconds - elapsed)
        elapsed += length
        steps.append((length, round(elapsed, 6)))
    return steps


def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _next_state(build: pd.AcquiredJob.WorkspaceBuild, transition: str, plan: BuildPlan) -> bytes:
    """With no state in the spec: echo's own small state that counts builds; a
    state that is not echo's is carried forward unchanged."""
    builds = 0
    if build.state:
        try:
            previous = json.loads(build.state)
        except ValueError:
            return build.state
        if not (isinstance(previous, dict) and previous.get("provisioner") == "echo"):
            return build.state
        count = previous.get("builds")
        builds = count if isinstance(count, int) else 0
    state = {
        "provisioner": "echo",
        "builds": builds + 1,
        "workspace": build.workspace_name,
        "transition": transition,
        "resources": [resource.name for resource in plan.resources],
    }
    return json.dumps(state).encode()
