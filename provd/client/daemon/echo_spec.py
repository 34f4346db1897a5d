"""The echo provisioner's script, `provd-echo.json`: read from a job's archive and
checked.

docs/echo.md describes the format. Parsing resolves everything up front (defaults,
per-job-type and per-transition overrides, the readme file), so a bad file fails
the job before its first stage, with the JSON path of the problem:

    provd-echo.json: stages[1].delay must be a number

A job without the file gets the same result as an empty object, `{}`: a default run.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.protocol import INT32_MAX

SPEC_FILE = "provd-echo.json"
README_FILE = "README.md"
TRANSITIONS = ("start", "stop", "destroy")
LEVELS: Mapping[str, sdk.LogLevel] = {
    "trace": sdk.TRACE,
    "debug": sdk.DEBUG,
    "info": sdk.INFO,
    "warn": sdk.WARN,
    "error": sdk.ERROR,
}
T = TypeVar("T")


class SpecError(Exception):
    """provd-echo.json, or the archive that holds it, is unusable; the message says where."""


# -- what a job plays back ------------------------------------------------------


@dataclass(frozen=True)
class Line:
    output: str
    level: sdk.LogLevel = sdk.INFO
    delay: float | None = None  # seconds before the line; None: the stage's line_delay


@dataclass(frozen=True)
class Wait:
    """Sleep `seconds` in steps of `step`, logging `output` after each step."""

    seconds: float
    step: float = 1.0
    output: str = "Still working: {elapsed}s of {seconds}s"
    level: sdk.LogLevel = sdk.INFO

    def render(self, elapsed: float) -> str:
        return (
            self.output.replace("{elapsed}", f"{elapsed:g}")
            .replace("{remaining}", f"{self.seconds - elapsed:g}")
            .replace("{seconds}", f"{self.seconds:g}")
        )


@dataclass(frozen=True)
class Stage:
    name: str
    lines: tuple[Line, ...] = ()
    delay: float = 0.0  # before the first line
    line_delay: float = 0.05  # before each line
    wait: Wait | None = None  # after the lines
    after: float = 0.0  # at the end


@dataclass(frozen=True)
class Failure:
    error: str
    error_code: str = ""
    stage: str = ""  # "": the last stage's name


@dataclass(frozen=True)
class ImportPlan:
    stages: tuple[Stage, ...]
    fail: Failure | None
    variables: tuple[sdk.TemplateVariable, ...]
    readme: bytes
    parameters: tuple[sdk.RichParameter, ...]
    external_auth: tuple[sdk.ExternalAuthProviderResource, ...]
    start_resources: tuple[sdk.Resource, ...]
    stop_resources: tuple[sdk.Resource, ...]


@dataclass(frozen=True)
class BuildPlan:
    stages: tuple[Stage, ...]
    fail: Failure | None
    resources: tuple[sdk.Resource, ...]
    state: bytes | None  # None: carry the state forward, or count builds
    cost: int | None  # None: the sum of the resources' daily costs

    @property
    def daily_cost(self) -> int:
        return self.cost if self.cost is not None else sum(r.daily_cost for r in self.resources)


@dataclass(frozen=True)
class DryRunPlan:
    stages: tuple[Stage, ...]
    fail: Failure | None
    resources: tuple[sdk.Resource, ...]


@dataclass(frozen=True)
class EchoSpec:
    found: bool  # whether the archive had a provd-echo.json
    description: str
    template_import: ImportPlan
    workspace_build: Mapping[str, BuildPlan]  # by transition: start, stop, destroy
    template_dry_run: DryRunPlan


# -- reading --------------------------------------------------------------------


def load_spec(archive: bytes) -> EchoSpec:
    """The spec in a job's tar (at its root, as `provd-echo.json` or
    `./provd-echo.json`); the default spec when there is none."""
    files = archive_files(archive)
    return parse_spec(files.get(SPEC_FILE), files)


def archive_files(archive: bytes) -> dict[str, bytes]:
    """The regular files in a tar, by path without a leading `./`."""
    if not archive:
        return {}
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name
                while name.startswith("./"):
                    name = name[2:]
                content = tar.extractfile(member)
                if content is not None:
                    files[name] = content.read()
    except (tarfile.TarError, EOFError) as error:
        raise SpecError(f"the template source is not a valid tar archive ({error})") from None
    return files


def parse_spec(raw: bytes | None, files: Mapping[str, bytes] | None = None) -> EchoSpec:
    """Check and resolve a provd-echo.json (None: the file is absent); `files` are
    the archive's, for `readme` and the default stages."""
    files = files or {}
    data: object = {}
    if raw is not None:
        try:
            data = json.loads(
                raw.decode("utf-8-sig"),
                object_pairs_hook=_no_duplicates,
                parse_constant=_no_constants,
            )
        except (UnicodeDecodeError, ValueError) as error:
            raise SpecError(f"{SPEC_FILE}: not valid JSON: {error}") from None
    top = _Obj(data, "", ("description", "stages", "fail", *_JOB_TYPES))
    stages = top.optional("stages", _stages)
    fail = top.optional("fail", _failure)
    builds = _workspace_builds(top.child("workspace_build"), stages, fail)
    return EchoSpec(
        found=raw is not None,
        description=top.string("description"),
        template_import=_template_import(top.child("template_import"), stages, fail, builds, files),
        workspace_build=builds,
        template_dry_run=_template_dry_run(top.child("template_dry_run"), stages, fail, builds),
    )


_JOB_TYPES = ("template_import", "workspace_build", "template_dry_run")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the field {key!r} appears twice in one object")
        result[key] = value
    return result


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


# -- job types ------------------------------------------------------------------

_Stages = tuple[Stage, ...] | None  # None: not given here


def _template_import(
    obj: _Obj,
    stages: _Stages,
    fail: Failure | None,
    builds: Mapping[str, BuildPlan],
    files: Mapping[str, bytes],
) -> ImportPlan:
    obj.allow(
        "stages",
        "fail",
        "variables",
        "readme",
        "parameters",
        "external_auth",
        "start_resources",
        "stop_resources",
    )
    readme = files.get(README_FILE, b"")
    if obj.has("readme"):
        readme = _readme(obj.get("readme"), obj.at("readme"), files)
    return ImportPlan(
        stages=_first(_first(obj.optional("stages", _stages), stages), _import_stages(files)),
        fail=obj.optional("fail", _failure) if obj.has("fail") else fail,
        variables=obj.unique_list("variables", _variable),
        readme=readme,
        parameters=obj.unique_list("parameters", _parameter),
        external_auth=obj.unique_list("external_auth", _external_auth, name=lambda p: p.id),
        start_resources=_first(
            obj.optional("start_resources", _resources), builds["start"].resources
        ),
        stop_resources=_first(obj.optional("stop_resources", _resources), builds["stop"].resources),
    )


def _workspace_builds(obj: _Obj, stages: _Stages, fail: Failure | None) -> dict[str, BuildPlan]:
    """One plan per transition: `transitions.<name>` fields over the section's."""
    obj.allow("stages", "fail", "resources", "state", "cost", "transitions")
    stages = _first(obj.optional("stages", _stages), stages)
    fail = obj.optional("fail", _failure) if obj.has("fail") else fail
    resources = _first(obj.optional("resources", _resources), (_default_resource(),))
    state = obj.optional("state", _state)
    cost = obj.optional("cost", _cost)
    transitions = obj.child("transitions")
    transitions.allow(*TRANSITIONS)
    plans: dict[str, BuildPlan] = {}
    for transition in TRANSITIONS:
        part = transitions.child(transition)
        if transition == "destroy":
            if part.has("resources"):
                raise _error(
                    part.at("resources"), "is not allowed: a destroy build has no resources"
                )
            part.allow("stages", "fail", "state", "cost")
        else:
            part.allow("stages", "fail", "resources", "state", "cost")
        own_resources = _first(part.optional("resources", _resources), resources)
        plan_resources = () if transition == "destroy" else own_resources
        plan = BuildPlan(
            stages=_first(
                _first(part.optional("stages", _stages), stages),
                _build_stages(transition, len(plan_resources)),
            ),
            fail=part.optional("fail", _failure) if part.has("fail") else fail,
            resources=plan_resources,
            state=_first(part.optional("state", _state), state),
            # a destroy does not inherit the section's cost: it frees the workspace's
            cost=_first(part.optional("cost", _cost), None if transition == "destroy" else cost),
        )
        if plan.daily_cost > INT32_MAX:
            raise _error(obj.at("resources"), f"cost more than {INT32_MAX} credits a day")
        plans[transition] = plan
    return plans


def _template_dry_run(
    obj: _Obj, stages: _Stages, fail: Failure | None, builds: Mapping[str, BuildPlan]
) -> DryRunPlan:
    obj.allow("stages", "fail", "resources")
    resources = _first(obj.optional("resources", _resources), builds["start"].resources)
    return DryRunPlan(
        stages=_first(_first(obj.optional("stages", _stages), stages), _dry_run_stages(resources)),
        fail=obj.optional("fail", _failure) if obj.has("fail") else fail,
        resources=resources,
    )


def _first(value: T | None, fallback: T) -> T:
    return fallback if value is None else value


# -- the default run --------------------------------------------------------------


def _default_resource() -> sdk.Resource:
    return sdk.Resource(name="echo", type="null_resource", daily_cost=0)


def _import_stages(files: Mapping[str, bytes]) -> tuple[Stage, ...]:
    count = f"{len(files)} file{'' if len(files) == 1 else 's'}"
    return (
        Stage("Parsing template", (Line(f"Reading the template source: {count}"),)),
        Stage(
            "Detecting persistent resources",
            (Line("Planning the start transition"), Line("Planning the stop transition")),
        ),
    )


def _build_stages(transition: str, resources: int) -> tuple[Stage, ...]:
    verb = {"start": "Starting", "stop": "Stopping", "destroy": "Destroying"}[transition]
    plan = f"Plan: {resources} to add, 0 to change, 0 to destroy."
    if transition == "destroy":
        plan = "Plan: 0 to add, 0 to change, all to destroy."
    return (
        Stage("Planning infrastructure", (Line("Refreshing state"), Line(plan))),
        Stage(f"{verb} workspace", (Line("Applying the plan"), Line("Apply complete."))),
    )


def _dry_run_stages(resources: Sequence[sdk.Resource]) -> tuple[Stage, ...]:
    plan = f"Plan: {len(resources)} to add, 0 to change, 0 to destroy."
    return (Stage("Planning infrastructure", (Line("Refreshing state"), Line(plan))),)


# -- pieces -----------------------------------------------------------------------


def _stages(value: object, path: str) -> tuple[Stage, ...]:
    return tuple(_stage(item, item_path) for item_path, item in _items(value, path))


def _stage(value: object, path: str) -> Stage:
    obj = _Obj(value, path, ("name", "lines", "delay", "line_delay", "wait", "after"))
    return Stage(
        name=obj.string("name", required=True),
        lines=tuple(_line(item, item_path) for item_path, item in obj.items("lines")),
        delay=obj.number("delay", 0.0),
        line_delay=obj.number("line_delay", Stage.line_delay),
        wait=obj.optional("wait", _wait),
        after=obj.number("after", 0.0),
    )


def _line(value: object, path: str) -> Line:
    if isinstance(value, str):
        return Line(value)
    obj = _Obj(value, path, ("output", "level", "delay"), what="a string or an object")
    if not obj.has("output"):
        raise _error(obj.at("output"), "is required")
    return Line(
        output=obj.string("output"),
        level=obj.level("level"),
        delay=obj.optional("delay", _number),
    )


def _wait(value: object, path: str) -> Wait:
    obj = _Obj(value, path, ("seconds", "step", "output", "level"))
    if not obj.has("seconds"):
        raise _error(obj.at("seconds"), "is required")
    step = obj.number("step", Wait.step)
    if step <= 0:
        raise _error(obj.at("step"), "must be greater than 0")
    return Wait(
        seconds=obj.number("seconds", 0.0),
        step=step,
        output=obj.string("output", Wait.output),
        level=obj.level("level"),
    )


def _failure(value: object, path: str) -> Failure | None:
    if value is None:
        return None  # `"fail": null` overrides an inherited failure
    obj = _Obj(value, path, ("error", "error_code", "stage"), what="an object or null")
    return Failure(
        error=obj.string("error", required=True),
        error_code=obj.string("error_code"),
        stage=obj.string("stage"),
    )


def _readme(value: object, path: str, files: Mapping[str, bytes]) -> bytes:
    if isinstance(value, str):
        return value.encode()
    obj = _Obj(value, path, ("file",), what="a string or an object")
    name = obj.string("file", required=True)
    content = files.get(name.removeprefix("./"))
    if content is None:
        raise _error(obj.at("file"), f"names {name!r}, which is not in the template source")
    return content


def _state(value: object, path: str) -> bytes:
    if not isinstance(value, str):
        raise _error(path, "must be a string")
    return value.encode()


def _cost(value: object, path: str) -> int:
    return _int(value, path, minimum=0)


def _variable(value: object, path: str) -> sdk.TemplateVariable:
    obj = _Obj(value, path, ("name", "description", "type", "default", "required", "sensitive"))
    return sdk.TemplateVariable(
        name=obj.string("name", required=True),
        description=obj.string("description"),
        type=obj.choice("type", ("string", "number", "bool"), "string"),
        default_value=obj.scalar("default"),
        required=obj.boolean("required", not obj.has("default")),
        sensitive=obj.boolean("sensitive", False),
    )


_PARAMETER_FIELDS = (
    "name",
    "display_name",
    "description",
    "type",
    "default",
    "required",
    "mutable",
    "ephemeral",
    "icon",
    "order",
    "options",
    "validation",
)


def _parameter(value: object, path: str) -> sdk.RichParameter:
    obj = _Obj(value, path, _PARAMETER_FIELDS)
    kind = obj.choice("type", ("string", "number", "bool", "list(string)"), "string")
    validation = obj.child("validation")
    validation.allow("regex", "error", "min", "max", "monotonic")
    parameter = sdk.RichParameter(
        name=obj.string("name", required=True),
        display_name=obj.string("display_name"),
        description=obj.string("description"),
        type=kind,
        default_value=obj.scalar("default", lists=kind == "list(string)"),
        required=obj.boolean("required", not obj.has("default")),
        mutable=obj.boolean("mutable", False),
        ephemeral=obj.boolean("ephemeral", False),
        icon=obj.string("icon"),
        order=obj.integer("order", 0),
        options=obj.unique_list("options", _option),
        validation_regex=validation.string("regex"),
        validation_error=validation.string("error"),
        validation_monotonic=validation.choice("monotonic", ("increasing", "decreasing"), ""),
    )
    if validation.has("min"):  # proto3 optional: set only when given
        parameter.validation_min = validation.integer("min", 0)
    if validation.has("max"):
        parameter.validation_max = validation.integer("max", 0)
    return parameter


def _option(value: object, path: str) -> sdk.RichParameterOption:
    obj = _Obj(value, path, ("name", "value", "description", "icon"))
    if not obj.has("value"):
        raise _error(obj.at("value"), "is required")
    return sdk.RichParameterOption(
        name=obj.string("name", required=True),
        value=obj.scalar("value"),
        description=obj.string("description"),
        icon=obj.string("icon"),
    )


def _external_auth(value: object, path: str) -> sdk.ExternalAuthProviderResource:
    if isinstance(value, str):
        if not value:
            raise _error(path, "must not be empty")
        return sdk.ExternalAuthProviderResource(id=value)
    obj = _Obj(value, path, ("id", "optional"), what="a provider id or an object")
    return sdk.ExternalAuthProviderResource(
        id=obj.string("id", required=True), optional=obj.boolean("optional", False)
    )


def _resources(value: object, path: str) -> tuple[sdk.Resource, ...]:
    return _unique(_items(value, path), _resource, lambda resource: resource.name)


_RESOURCE_FIELDS = (
    "name",
    "type",
    "daily_cost",
    "icon",
    "hide",
    "instance_type",
    "metadata",
    "agents",
)


def _resource(value: object, path: str) -> sdk.Resource:
    obj = _Obj(value, path, _RESOURCE_FIELDS)
    return sdk.Resource(
        name=obj.string("name", required=True),
        type=obj.string("type", "null_resource", nonempty=True),
        daily_cost=obj.integer("daily_cost", 0, minimum=0),
        icon=obj.string("icon"),
        hide=obj.boolean("hide", False),
        instance_type=obj.string("instance_type"),
        metadata=[
            _metadata(key, item, item_path) for key, item_path, item in obj.fields("metadata")
        ],
        agents=obj.unique_list("agents", _agent),
    )


def _metadata(key: str, value: object, path: str) -> sdk.Resource.Metadata:
    if value is None:
        return sdk.Resource.Metadata(key=key, is_null=True)
    if isinstance(value, dict):
        obj = _Obj(value, path, ("value", "sensitive"))
        return sdk.Resource.Metadata(
            key=key, value=obj.scalar("value"), sensitive=obj.boolean("sensitive", False)
        )
    return sdk.Resource.Metadata(key=key, value=_scalar(value, path))


def _agent(value: object, path: str) -> sdk.Agent:
    obj = _Obj(
        value, path, ("name", "operating_system", "architecture", "directory", "env", "apps")
    )
    env: dict[str, str] = {}
    for key, item_path, item in obj.fields("env"):
        if not isinstance(item, str):
            raise _error(item_path, "must be a string")
        env[key] = item
    apps = obj.unique_list("apps", _app, name=_slug)
    return sdk.Agent(
        name=obj.string("name", required=True),
        operating_system=obj.string("operating_system", "linux", nonempty=True),
        architecture=obj.string("architecture", "amd64", nonempty=True),
        directory=obj.string("directory"),
        env=env,
        apps=apps,
    )


def _slug(app: sdk.App) -> str:
    return app.slug


def _app(value: object, path: str) -> sdk.App:
    obj = _Obj(value, path, ("slug", "display_name", "url", "command", "icon"))
    return sdk.App(
        slug=obj.string("slug", required=True),
        display_name=obj.string("display_name"),
        url=obj.string("url"),
        command=obj.string("command"),
        icon=obj.string("icon"),
    )


# -- checking JSON values, with their paths ---------------------------------------


def _error(path: str, problem: str) -> SpecError:
    return SpecError(f"{SPEC_FILE}: {path or 'the top level'} {problem}")


def _items(value: object, path: str) -> Iterator[tuple[str, object]]:
    if not isinstance(value, list):
        raise _error(path, "must be a list")
    for index, item in enumerate(value):
        yield f"{path}[{index}]", item


def _unique(
    items: Iterator[tuple[str, object]],
    parse: Callable[[object, str], T],
    name: Callable[[T], str],
) -> tuple[T, ...]:
    parsed: dict[str, T] = {}
    for path, item in items:
        value = parse(item, path)
        if name(value) in parsed:
            raise _error(path, f"repeats the name {name(value)!r}")
        parsed[name(value)] = value
    return tuple(parsed.values())


def _number(value: object, path: str) -> float:
    """Seconds: a finite number, not negative."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _error(path, "must be a number")
    if value < 0:
        raise _error(path, "must not be negative")
    return float(value)


def _int(value: object, path: str, minimum: int = -INT32_MAX - 1) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(path, "must be a whole number")
    if value < minimum:
        raise _error(
            path, "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        )
    if value > INT32_MAX:
        raise _error(path, f"must be at most {INT32_MAX}")
    return value


def _scalar(value: object, path: str, lists: bool = False) -> str:
    """A string, number or boolean as the protocol's string; with `lists`, a list of
    strings too, as its JSON (how list(string) parameters carry values)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if lists and isinstance(value, list) and all(isinstance(item, str) for item in value):
        return json.dumps(value)
    what = (
        "a string, a number, a boolean or a list of strings"
        if lists
        else "a string, a number or a boolean"
    )
    raise _error(path, f"must be {what}")


class _Obj:
    """A JSON object being read: its fields, type-checked, with their paths."""

    def __init__(
        self,
        value: object,
        path: str,
        fields: Sequence[str] | None = None,
        what: str = "an object",
    ) -> None:
        if not isinstance(value, dict):
            raise _error(path, f"must be {what}")
        self._value: dict[str, object] = value
        self.path = path
        if fields is not None:
            self.allow(*fields)

    def allow(self, *fields: str) -> None:
        """Refuse fields other than these: a typo must not pass silently."""
        for key in self._value:
            if key not in fields:
                known = ", ".join(fields) or "none"
                raise _error(self.at(key), f"is not a known field (known: {known})")

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self._value

    def get(self, key: str) -> object:
        return self._value.get(key)

    def optional(self, key: str, parse: Callable[[object, str], T]) -> T | None:
        return parse(self._value[key], self.at(key)) if key in self._value else None

    def child(self, key: str) -> _Obj:
        """An object field, whose fields the caller then `allow`s; absent reads as {}."""
        return _Obj(self._value.get(key, {}), self.at(key))

    def fields(self, key: str) -> Iterator[tuple[str, str, object]]:
        """(name, path, value) of each field of an object field (a map)."""
        for name, value in self.child(key)._value.items():
            yield name, f"{self.at(key)}.{name}", value

    def items(self, key: str) -> Iterator[tuple[str, object]]:
        return _items(self._value.get(key, []), self.at(key))

    def unique_list(
        self,
        key: str,
        parse: Callable[[object, str], T],
        name: Callable[[T], str] = lambda item: str(getattr(item, "name", "")),
    ) -> tuple[T, ...]:
        """A list field whose items have distinct names."""
        return _unique(self.items(key), parse, name)

    def string(
        self, key: str, default: str = "", *, required: bool = False, nonempty: bool = False
    ) -> str:
        """`required`: present and not empty; `nonempty`: not empty if present."""
        if key not in self._value:
            if required:
                raise _error(self.at(key), "is required")
            return default
        value = self._value[key]
        if not isinstance(value, str):
            raise _error(self.at(key), "must be a string")
        if not value and (required or nonempty):
            raise _error(self.at(key), "must not be empty")
        return value

    def number(self, key: str, default: float) -> float:
        return _first(self.optional(key, _number), default)

    def integer(self, key: str, default: int, *, minimum: int = -INT32_MAX - 1) -> int:
        if key not in self._value:
            return default
        return _int(self._value[key], self.at(key), minimum)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._value.get(key, default)
        if not isinstance(value, bool):
            raise _error(self.at(key), "must be true or false")
        return value

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.string(key, default)
        if key in self._value and value not in choices:
            raise _error(self.at(key), f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def level(self, key: str) -> sdk.LogLevel:
        return LEVELS[self.choice(key, tuple(LEVELS), "info")]

    def scalar(self, key: str, *, lists: bool = False) -> str:
        return _scalar(self._value[key], self.at(key), lists) if key in self._value else ""
