"""The learning-rule interface and the rule registry.

A rule is a dataclass that subclasses :class:`Rule`. Its fields are its parameters, declared
with :func:`param` (a default, a one-line help text, and a Brian2 unit where it has one)::

    @dataclass
    class MyRule(Rule):
        \"\"\"One line shown by ``plastix list``. Equation and source below.\"\"\"
        eta: float = param(0.01, "learning rate", min=0.0)
        tau: Quantity = param(20 * ms, "trace time constant", min=0 * ms, min_exclusive=True)

        def brian2_form(self) -> Brian2Form: ...
        def rate_update(self, pre_rate, post_rate, weight, modulator=None): ...  # optional

Constructing a rule validates every parameter against its annotation (``float``, ``int``,
``bool``, ``str``, ``Quantity`` with the unit of its default, ``Literal[...]``, any class such
as ``TimedArray``, and ``X | None``) and raises a TypeError / ValueError that names the
parameter, the value, the expected type or unit, and the fix. Cross-parameter checks go in an
optional ``validate(self)`` method.

Conventions shared by every rule
--------------------------------
Brian2 form (:meth:`Rule.brian2_form`):
  * the plastic weight is the dimensionless synaptic variable ``w`` declared in ``model``;
  * ``on_pre`` / ``on_post`` hold only the plasticity code; the synaptic effect on the target
    neuron (e.g. ``ge_post += w*nS``) is added by the caller, see
    :meth:`Brian2Form.synapses_kwargs`;
  * every constant the equations use is in ``namespace`` (units included);
  * three-factor rules name in ``Brian2Form.modulator`` the synaptic variable that a
    modulatory ``Synapses`` targeting the plastic ``Synapses`` writes to
    (``on_pre=f"{form.modulator}_post += 1"``).

Torch rate form (:meth:`Rule.rate_update`), where a rule has one:
  * ``pre_rate`` has shape ``(..., n_pre)`` and ``post_rate`` ``(..., n_post)``, in Hz, with
    the same leading batch dimensions (or none);
  * ``weight`` has shape ``(n_post, n_pre)`` (the ``torch.nn.Linear`` layout; Brian2's
    ``w[i, j]`` for pre ``i`` and post ``j`` is its transpose);
  * ``modulator`` is ``None`` (no third factor) or broadcastable to ``(..., n_post)``: a
    scalar, one value per post neuron, or ``(batch, 1)`` for one value per sample. Rules
    without a third factor in their Brian2 form use it as a multiplicative gate;
  * the result is the expected weight change per second, ``dW/dt`` (weight units / s),
    shape ``(n_post, n_pre)``, averaged over the batch dimensions; a trainer applies
    ``W = rule.clip(W + dt * dW)``.

Registry: :func:`list_rules` returns the built-in rules plus every rule registered by an
installed package under the entry-point group ``plastix.rules``::

    [project.entry-points."plastix.rules"]
    my-rule = "my_package.rules:MyRule"

A plugin that fails to load, or does not point at a :class:`Rule` dataclass, is left out with
a :class:`RulePluginWarning` naming it. :func:`get_rule` builds a rule by name;
:meth:`RuleSpec.create_from_config` does the same from text values (config files, CLI).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, NamedTuple

import brian2.units as brian2_units
import numpy as np
import torch
from brian2 import Quantity, get_dimensions, have_same_dimensions

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_RULES",
    "Brian2Form",
    "ParameterSpec",
    "Rule",
    "RulePluginWarning",
    "RuleSpec",
    "format_rules",
    "get_rule",
    "list_rules",
    "param",
    "rate_tensors",
]

ENTRY_POINT_GROUP = "plastix.rules"

#: The rules that ship with plastix: name -> "module:attribute", imported when first listed.
BUILTIN_RULES: Mapping[str, str] = types.MappingProxyType(
    {
        "hebbian": "plastix.plasticity.classic:Hebbian",
        "oja": "plastix.plasticity.classic:Oja",
        "bcm": "plastix.plasticity.classic:BCM",
        "stdp": "plastix.plasticity.classic:STDP",
        "stdp-multiplicative": "plastix.plasticity.classic:MultiplicativeSTDP",
        "triplet-stdp": "plastix.plasticity.classic:TripletSTDP",
        "reward-stdp": "plastix.plasticity.classic:RewardModulatedSTDP",
        "ib": "plastix.plasticity.ib_rule:IBThreeFactor",
    }
)


class RulePluginWarning(UserWarning):
    """A rule plugin could not be loaded and was left out of the registry."""


# --------------------------------------------------------------------------------------------
# Brian2 form
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Brian2Form:
    """What a rule gives Brian2: ``Synapses(pre, post, model=..., on_pre=..., on_post=...,
    namespace=..., method=...)``.

    ``method`` is the integration method for clock-driven equations (None: Brian2 chooses).
    ``modulator`` names the synaptic variable a modulatory ``Synapses`` writes to, for
    three-factor rules (None otherwise).
    """

    model: str
    on_pre: str
    on_post: str
    namespace: dict[str, Any]
    method: str | None = None
    modulator: str | None = None

    def postsynaptic_variables(self) -> set[str]:
        """Names the postsynaptic group must define: every ``name_post`` in the model and the
        spike code that is not a namespace constant (e.g. ``{"gate", "psi"}`` for the IB rule)."""
        text = "\n".join((self.model, self.on_pre, self.on_post))
        return set(re.findall(r"\b([A-Za-z_]\w*?)_post\b", text)) - {
            name.removesuffix("_post") for name in self.namespace if name.endswith("_post")
        }

    def synapses_kwargs(self, on_pre_effect: str = "") -> dict[str, Any]:
        """Keyword arguments for ``brian2.Synapses``.

        ``on_pre_effect`` is the synaptic transmission, e.g. ``"ge_post += w*nS"``; it runs
        before the plasticity code, so a spike is transmitted with the weight it arrived at.
        """
        on_pre = f"{on_pre_effect}\n{self.on_pre}" if on_pre_effect.strip() else self.on_pre
        kwargs: dict[str, Any] = {
            "model": self.model,
            "on_pre": on_pre,
            "on_post": self.on_post,
            "namespace": dict(self.namespace),
        }
        if self.method is not None:
            kwargs["method"] = self.method
        return kwargs


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def param(
    default: Any = MISSING,
    help: str = "",
    *,
    unit: Quantity | None = None,
    min: Any = None,
    max: Any = None,
    min_exclusive: bool = False,
) -> Any:
    """Declare a rule parameter (a dataclass field).

    ``unit`` is needed only for a Quantity parameter whose default is None (or that has no
    default); otherwise the unit is taken from the default. ``min``/``max`` bound the value
    (in the parameter's unit); ``min_exclusive`` makes the lower bound strict.
    """
    if unit is None and isinstance(default, Quantity) and not default.is_dimensionless:
        unit = default.get_best_unit()
    metadata = {
        "help": help,
        "unit": unit,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
    }
    if isinstance(default, Quantity | np.ndarray):  # unhashable: dataclasses need a factory
        frozen = default.copy()
        return field(default_factory=lambda: frozen.copy(), metadata=metadata)
    return field(default=default, metadata=metadata)


class ParameterSpec(NamedTuple):
    """One declared parameter: ``(name, type, default, unit, help)``.

    ``type`` is the annotation (a class, ``Literal[...]`` or a union), ``default`` is
    ``dataclasses.MISSING`` for a required parameter, ``unit`` is the Brian2 unit as text
    (e.g. ``"ms"``) or None.
    """

    name: str
    type: Any
    default: Any
    unit: str | None
    help: str

    @property
    def type_name(self) -> str:
        return _type_name(self.type)

    @property
    def required(self) -> bool:
        return self.default is MISSING


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _unit_text(unit: Quantity | None) -> str | None:
    """The unit as a name Brian2 code can use (``ms``, ``Hz``, ``second``), or None."""
    if unit is None:
        return None
    short = str(unit)
    if isinstance(getattr(brian2_units, short, None), Quantity):
        return short
    return repr(unit)


def _dimension_text(value: Quantity) -> str:
    dim = get_dimensions(value)
    return "dimensionless" if have_same_dimensions(value, 1) else f"dimension {dim}"


def _format_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _resolved_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field_unit(f: dataclasses.Field) -> Quantity | None:
    """The declared unit of a field, else the unit of its Quantity default, else None."""
    unit = f.metadata.get("unit")
    if unit is not None:
        return unit
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    if isinstance(default, Quantity) and not default.is_dimensionless:
        return default.get_best_unit()
    return None


def _check_type(name: str, value: Any, annotation: Any, unit: Quantity | None) -> Any:
    """Return ``value`` (normalised) if it matches ``annotation``; raise TypeError otherwise."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if value is None and type(None) in members:
            return None
        for member in members:
            if member is type(None):
                continue
            try:
                return _check_type(name, value, member, unit)
            except (TypeError, ValueError):
                continue
        raise TypeError(
            f"parameter '{name}': expected {_type_name(annotation)}, got "
            f"{_format_value(value)} ({type(value).__name__}); fix: pass one of those types"
        )
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ValueError(
                f"parameter '{name}': {_format_value(value)} is not one of "
                f"{', '.join(repr(c) for c in choices)}; fix: pick one of them"
            )
        return value
    if annotation is Any:
        return value
    if annotation is Quantity:
        if unit is None:
            raise TypeError(f"parameter '{name}': declared as Quantity without a unit")
        unit_name = _unit_text(unit)
        example = f"{name}=<value>*{unit_name}"
        if isinstance(value, Quantity):
            if have_same_dimensions(value, unit):
                return value
            got = f"{_format_value(value)} ({_dimension_text(value)})"
        elif isinstance(value, int | float | np.number) and not isinstance(value, bool):
            got = f"{_format_value(value)} (a plain number without a unit)"
        else:
            got = f"{_format_value(value)} ({type(value).__name__})"
        raise TypeError(
            f"parameter '{name}': expected a Brian2 quantity in {unit_name} "
            f"({_dimension_text(unit)}), got {got}; fix: {example}"
        )
    if annotation is float:
        if isinstance(value, Quantity) and value.is_dimensionless and np.ndim(value) == 0:
            return float(value)
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            raise TypeError(
                f"parameter '{name}': expected a plain number (float), got "
                f"{_format_value(value)} ({type(value).__name__}); fix: {name}=<number>"
            )
        return float(value)
    if annotation is int:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise TypeError(
                f"parameter '{name}': expected an integer, got {_format_value(value)} "
                f"({type(value).__name__}); fix: {name}=<int>"
            )
        return int(value)
    if annotation is bool:
        if not isinstance(value, bool | np.bool_):
            raise TypeError(
                f"parameter '{name}': expected True or False, got {_format_value(value)} "
                f"({type(value).__name__})"
            )
        return bool(value)
    if isinstance(annotation, type):
        if not isinstance(value, annotation):
            raise TypeError(
                f"parameter '{name}': expected {annotation.__name__}, got "
                f"{_format_value(value)} ({type(value).__name__})"
            )
        return value
    return value


def _check_finite(name: str, value: Any, annotation: Any) -> None:
    if isinstance(value, float | Quantity | np.ndarray) and not np.all(np.isfinite(value)):
        optional = type(None) in typing.get_args(annotation)
        raise ValueError(
            f"parameter '{name}': {_format_value(value)} is not finite; fix: give a finite value"
            + (" (None: no value, e.g. no bound)" if optional else "")
        )


def _check_range(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if value is None:
        return
    low, high = meta.get("min"), meta.get("max")
    if low is not None:
        too_low = value <= low if meta.get("min_exclusive") else value < low
        if np.any(too_low):
            relation = ">" if meta.get("min_exclusive") else ">="
            raise ValueError(
                f"parameter '{name}': {_format_value(value)} is out of range; "
                f"fix: use a value {relation} {low}"
            )
    if high is not None and np.any(value > high):
        raise ValueError(
            f"parameter '{name}': {_format_value(value)} is out of range; "
            f"fix: use a value <= {high}"
        )


# --------------------------------------------------------------------------------------------
# Rule base class
# --------------------------------------------------------------------------------------------


@dataclass
class Rule:
    """Base class of every learning rule; subclasses are dataclasses (see module docs).

    Weight bounds: a rule that has fields ``w_min`` / ``w_max`` is bounded by them
    (:meth:`weight_bounds`, :meth:`clip`).
    """

    def __post_init__(self) -> None:
        hints = _resolved_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            annotation = hints.get(f.name, Any)
            checked = _check_type(f.name, value, annotation, _field_unit(f))
            _check_finite(f.name, checked, annotation)
            _check_range(f.name, checked, f.metadata)
            setattr(self, f.name, checked)
        self.validate()

    def validate(self) -> None:
        """Cross-parameter checks; raise ValueError naming the parameters and the fix."""
        low, high = self.weight_bounds()
        if low is not None and high is not None and not low < high:
            raise ValueError(f"parameters 'w_min'={low} and 'w_max'={high}: need w_min < w_max")

    # -- forms ---------------------------------------------------------------------------------

    def brian2_form(self) -> Brian2Form:
        """The Brian2 synapse model of this rule."""
        raise NotImplementedError(f"{type(self).__name__} has no Brian2 form")

    def rate_update(
        self,
        pre_rate: torch.Tensor,
        post_rate: torch.Tensor,
        weight: torch.Tensor,
        modulator: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Expected dW/dt (per second) for the given rates in Hz (see module docs)."""
        raise NotImplementedError(f"{type(self).__name__} has no torch rate form")

    @classmethod
    def has_rate_form(cls) -> bool:
        return cls.rate_update is not Rule.rate_update

    # -- bounds --------------------------------------------------------------------------------

    def weight_bounds(self) -> tuple[float | None, float | None]:
        """``(w_min, w_max)``; None where the rule leaves the weight unbounded."""
        return getattr(self, "w_min", None), getattr(self, "w_max", None)

    def clip(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight clipped to :meth:`weight_bounds`."""
        low, high = self.weight_bounds()
        if low is None and high is None:
            return weight
        return torch.clamp(weight, min=low, max=high)

    # -- helpers for rate forms ----------------------------------------------------------------

    @staticmethod
    def batch_outer(
        post_factor: torch.Tensor,
        pre_factor: torch.Tensor,
        modulator: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """``mean_batch (M * post_factor)[:, None] * pre_factor[None, :]``, shape
        ``(n_post, n_pre)``; the building block of every rate form."""
        post_factor = torch.as_tensor(post_factor)
        pre_factor = torch.as_tensor(pre_factor, dtype=post_factor.dtype)
        if modulator is not None:
            post_factor = post_factor * torch.as_tensor(modulator, dtype=post_factor.dtype)
        if post_factor.shape[:-1] != pre_factor.shape[:-1]:
            raise ValueError(
                f"pre and post batch shapes differ: {tuple(pre_factor.shape[:-1])} vs "
                f"{tuple(post_factor.shape[:-1])}; fix: pass rates with the same batch shape"
            )
        n_samples = max(1, int(np.prod(post_factor.shape[:-1])))
        post_2d = post_factor.reshape(n_samples, post_factor.shape[-1])
        pre_2d = pre_factor.reshape(n_samples, pre_factor.shape[-1])
        return post_2d.T @ pre_2d / n_samples


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    """A registered rule: its name, class, where it came from and its parameters."""

    name: str
    rule_class: type[Rule]
    source: str

    @property
    def description(self) -> str:
        """The first paragraph of the rule's docstring, on one line."""
        doc = (self.rule_class.__doc__ or "").strip()
        return " ".join(doc.split("\n\n")[0].split())

    @property
    def parameters(self) -> list[ParameterSpec]:
        hints = _resolved_hints(self.rule_class)
        specs = []
        for f in dataclasses.fields(self.rule_class):
            default: Any = f.default
            if f.default_factory is not MISSING:
                default = f.default_factory()
            unit = _field_unit(f)
            specs.append(
                ParameterSpec(
                    f.name,
                    hints.get(f.name, Any),
                    default,
                    _unit_text(unit),
                    f.metadata.get("help", ""),
                )
            )
        return specs

    @property
    def has_rate_form(self) -> bool:
        return self.rule_class.has_rate_form()

    def create(self, **params: Any) -> Rule:
        """Build the rule; unknown and missing parameters are refused by name."""
        specs = {p.name: p for p in self.parameters}
        unknown = sorted(set(params) - set(specs))
        if unknown:
            raise TypeError(
                f"rule '{self.name}': unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"valid parameters: {', '.join(specs) or '(none)'}"
            )
        for spec in specs.values():
            if spec.required and spec.name not in params:
                unit = f" in {spec.unit}" if spec.unit else ""
                raise TypeError(
                    f"rule '{self.name}': missing parameter '{spec.name}' "
                    f"({spec.type_name}{unit}); fix: get_rule('{self.name}', {spec.name}=...)"
                )
        return self.rule_class(**params)

    def create_from_config(self, values: Mapping[str, Any]) -> Rule:
        """Build the rule from plain config values (TOML / ``--set key=value``): strings are
        parsed by the parameter's type (a Quantity as a number and a Brian2 unit name or
        symbol: ``"20*ms"``, ``"20 ms"``, ``"0.02 s"``, ``"1 ms**2"``; ``"0.5"``, ``"true"``,
        ``"none"``); other values pass through unchanged. Validation as :meth:`create`."""
        specs = {p.name: p for p in self.parameters}
        parsed = {
            key: _parse_text(specs[key], value)
            if key in specs and isinstance(value, str)
            else value
            for key, value in values.items()
        }
        return self.create(**parsed)


_NUMBER_AND_UNIT = re.compile(
    r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\*?\s*([A-Za-z_]\w*)?(?:\*\*(\d+))?\s*$"
)


@functools.cache
def _unit_symbols() -> dict[str, Quantity]:
    """Brian2's units by the symbol it prints (``s``, ``V``, ``uS``); some symbols, such as
    ``s``, are not names in ``brian2.units``."""
    from brian2.units.allunits import all_units

    symbols: dict[str, Quantity] = {}
    for unit in all_units:
        symbols.setdefault(str(unit), unit)
    return symbols


def _unit_by_name(name: str) -> Quantity | None:
    """The Brian2 unit called ``name`` (``ms``, ``second``) or printed as ``name`` (``s``)."""
    unit = getattr(brian2_units, name, None)
    if isinstance(unit, Quantity):
        return unit
    return _unit_symbols().get(name)


def _parse_text(spec: ParameterSpec, text: str) -> Any:
    """Convert config text to a value of ``spec.type``; text that does not parse is returned
    unchanged so that validation names the parameter and its expected type."""
    is_union = typing.get_origin(spec.type) in (typing.Union, types.UnionType)
    members = typing.get_args(spec.type) if is_union else (spec.type,)
    lowered = text.strip().lower()
    if type(None) in members and lowered in ("none", "null", ""):
        return None
    for member in members:
        if typing.get_origin(member) is Literal:
            if text in typing.get_args(member):
                return text
        elif member is bool and lowered in ("true", "false"):
            return lowered == "true"
        elif member in (int, float):
            try:
                return member(text)
            except ValueError:
                continue
        elif member is Quantity and (match := _NUMBER_AND_UNIT.match(text)):
            number, name, power = match.groups()
            unit = _unit_by_name(name) if name else 1
            if unit is not None and (name or not power):
                return float(number) * unit ** int(power or 1)
    return text


def _load_target(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _as_rule_class(obj: Any) -> type[Rule]:
    if not (isinstance(obj, type) and issubclass(obj, Rule) and dataclasses.is_dataclass(obj)):
        raise TypeError(f"{obj!r} is not a dataclass subclass of plastix.plasticity.rules.Rule")
    return obj


def _add(
    registry: dict[str, RuleSpec], name: str, load: Callable[[], Any], source: str, where: str
) -> None:
    try:
        rule_class = _as_rule_class(load())
    except Exception as err:  # any failure in third-party code must not break plastix
        warnings.warn(
            f"plastix: rule plugin '{name}' ({where}, from {source}) could not be loaded and "
            f"is left out: {type(err).__name__}: {err}",
            RulePluginWarning,
            stacklevel=2,  # list_rules' line: shown once per process, not once per caller
        )
        return
    if name in registry:
        if registry[name].rule_class is not rule_class:
            warnings.warn(
                f"plastix: rule plugin '{name}' ({where}, from {source}) is ignored: the name "
                f"is already taken by {registry[name].source}",
                RulePluginWarning,
                stacklevel=2,
            )
        return
    registry[name] = RuleSpec(name, rule_class, source)


def list_rules() -> dict[str, RuleSpec]:
    """Every available rule, name -> :class:`RuleSpec`: the built-ins, then the entry points
    of group ``plastix.rules`` (sorted by distribution and name)."""
    registry: dict[str, RuleSpec] = {}
    for name, target in BUILTIN_RULES.items():  # a failure here is a plastix bug: raise
        registry[name] = RuleSpec(name, _as_rule_class(_load_target(target)), "plastix")
    plugins = sorted(
        entry_points(group=ENTRY_POINT_GROUP),
        key=lambda ep: (ep.dist.name if ep.dist else "", ep.name),
    )
    for ep in plugins:
        source = ep.dist.name if ep.dist else "unknown distribution"
        _add(registry, ep.name, ep.load, source, ep.value)
    return registry


def get_rule(name: str, **params: Any) -> Rule:
    """The rule registered as ``name``, built with ``params`` (validated)."""
    rules = list_rules()
    if name not in rules:
        raise ValueError(
            f"unknown rule {name!r}; available rules: {', '.join(sorted(rules))}; "
            "fix: pick one of them or install the package that provides it"
        )
    return rules[name].create(**params)


def _field_unit_of(spec: RuleSpec, name: str) -> Quantity:
    return next(_field_unit(f) for f in dataclasses.fields(spec.rule_class) if f.name == name)


def format_rules(rules: Mapping[str, RuleSpec] | None = None) -> str:
    """Human-readable listing of ``rules`` (default: :func:`list_rules`) for ``plastix list``."""
    rules = list_rules() if rules is None else rules
    lines = []
    for name in sorted(rules):
        spec = rules[name]
        forms = "brian2 + torch" if spec.has_rate_form else "brian2"
        lines.append(f"{name}  [{forms}; from {spec.source}]")
        if spec.description:
            lines.append(f"    {spec.description}")
        for p in spec.parameters:
            default = "(required)" if p.required else _format_value(p.default)
            if isinstance(p.default, Quantity) and p.unit:
                default = f"{float(p.default / _field_unit_of(spec, p.name)):g} {p.unit}"
            unit = f" [{p.unit}]" if p.unit else ""
            help_text = f"  {p.help}" if p.help else ""
            lines.append(f"    {p.name}: {p.type_name}{unit} = {default}{help_text}")
    return "\n".join(lines)


def rate_tensors(pre_rate, post_rate, weight) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pre and post rates as tensors of the weight's float dtype, and the weight, after
    checking it is ``(n_post, n_pre)`` (the ``nn.Linear`` layout) for these rates."""
    weight = torch.as_tensor(weight)
    dtype = weight.dtype if weight.is_floating_point() else torch.get_default_dtype()
    pre = torch.as_tensor(pre_rate, dtype=dtype)
    post = torch.as_tensor(post_rate, dtype=dtype)
    if weight.shape != (post.shape[-1], pre.shape[-1]):
        raise ValueError(
            f"weight has shape {tuple(weight.shape)}, expected (n_post, n_pre) = "
            f"({post.shape[-1]}, {pre.shape[-1]}); fix: pass weight in the nn.Linear layout"
        )
    return pre, post, weight.to(dtype)
