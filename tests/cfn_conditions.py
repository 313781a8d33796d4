"""A CloudFormation template as one set of parameter values deploys it: conditions decided.

``deployed(template, {"KinesisStreamArn": arn})`` evaluates the template's ``Conditions``
(``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition``) over ``Ref`` of
parameters and ``Fn::Join`` of list parameters, then drops the resources and outputs whose
condition is false, takes the chosen branch of every ``Fn::If`` and removes
``Ref: AWS::NoValue`` — what CloudFormation does before creating anything, so tests can assert
what one mode's stack holds, and cfn-lint can check that stack alone (the values given become
their parameters' ``Default``, so cfn-lint checks the ``Ref`` of them as deployed).

What it models and what it cannot:

* Only the parameters given are known, unless ``use_defaults`` (then every parameter with a
  ``Default`` is known too). A condition that depends on an unknown parameter stays undecided:
  its resources, outputs and ``Fn::If`` stay as they are (their branches resolved), and it stays
  in ``Conditions``; decided conditions leave ``Conditions``.
* Values are compared as CloudFormation compares them, as strings (a ``Number`` default ``0``
  equals ``"0"``); a ``CommaDelimitedList`` is split on commas.
* No other intrinsic function is evaluated (``Fn::Sub``, ``Fn::Select``, ``Fn::GetAtt`` … stay
  as written), no transform runs, and ``Fn::ForEach`` blocks keep their shape (the resources
  inside them are resolved like any other).
"""

from __future__ import annotations

import copy
from typing import Any

_NO_VALUE = object()
_UNDECIDED = None


def deployed(
    template: dict[str, Any], parameters: dict[str, str], *, use_defaults: bool = False
) -> dict[str, Any]:
    """The template with every condition decided by ``parameters`` applied (see module doc)."""
    return _Resolver(template, parameters, use_defaults).resolved()


class _Resolver:
    def __init__(
        self, template: dict[str, Any], parameters: dict[str, str], use_defaults: bool
    ) -> None:
        self.template = template
        self.declared: dict[str, Any] = template.get("Parameters", {})
        unknown = set(parameters) - set(self.declared)
        if unknown:
            raise KeyError(f"not parameters of the template: {sorted(unknown)}")
        self.given = dict(parameters)
        self.known: dict[str, Any] = {}
        for name, declaration in self.declared.items():
            if name in parameters:
                self.known[name] = self._typed(declaration, parameters[name])
            elif use_defaults and "Default" in declaration:
                self.known[name] = self._typed(declaration, declaration["Default"])
        self.decided: dict[str, bool | None] = {}

    @staticmethod
    def _typed(declaration: dict[str, Any], value: Any) -> Any:
        text = _text(value)
        if str(declaration.get("Type", "")).startswith("CommaDelimitedList"):
            return [part.strip() for part in text.split(",")]
        return text

    # -- conditions ----------------------------------------------------------------------------

    def condition(self, name: str) -> bool | None:
        if name not in self.decided:
            self.decided[name] = _UNDECIDED  # a cycle stays undecided
            self.decided[name] = self._truth(self.template["Conditions"][name])
        return self.decided[name]

    def _truth(self, node: Any) -> bool | None:
        if isinstance(node, dict) and len(node) == 1:
            ((key, args),) = node.items()
            if key == "Condition":
                return self.condition(args)
            if key == "Fn::Equals":
                left, right = (self._value(arg) for arg in args)
                if left is _UNDECIDED or right is _UNDECIDED:
                    return _UNDECIDED
                return bool(left == right)
            if key == "Fn::Not":
                inner = self._truth(args[0])
                return _UNDECIDED if inner is _UNDECIDED else not inner
            if key in {"Fn::And", "Fn::Or"}:
                values = [self._truth(arg) for arg in args]
                stop = key == "Fn::Or"  # the value that decides on its own
                if stop in values:
                    return stop
                return _UNDECIDED if _UNDECIDED in values else not stop
        raise ValueError(f"not a condition this resolver models: {node!r}")

    def _value(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((key, args),) = node.items()
            if key == "Ref":
                return self.known.get(args, _UNDECIDED)
            if key == "Fn::Join":
                separator, items = args
                values = self._value(items)
                if values is _UNDECIDED:
                    return _UNDECIDED
                return _text(separator).join(_text(v) for v in values)
            return _UNDECIDED
        if isinstance(node, list):
            values = [self._value(item) for item in node]
            return _UNDECIDED if _UNDECIDED in values else values
        return _text(node)

    # -- the template --------------------------------------------------------------------------

    def resolved(self) -> dict[str, Any]:
        out = copy.deepcopy(dict(self.template))
        for name, value in self.given.items():
            out["Parameters"][name]["Default"] = value
        for name in out.get("Conditions", {}):
            self.condition(name)
        for section in ("Resources", "Outputs"):
            if section in out:
                out[section] = self._section(out[section])
        remaining = {
            name: self._conditions_node(node)
            for name, node in out.get("Conditions", {}).items()
            if self.decided[name] is _UNDECIDED
        }
        if remaining:
            out["Conditions"] = remaining
        else:
            out.pop("Conditions", None)
        return out

    def _section(self, entries: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, entry in entries.items():
            if name.startswith("Fn::ForEach::"):
                identifier, collection, body = entry
                out[name] = [identifier, collection, self._section(body)]
                continue
            decided = self.condition(entry["Condition"]) if "Condition" in entry else True
            if decided is False:
                continue
            entry = self._resolve(entry)
            if decided is True:
                entry.pop("Condition", None)
            out[name] = entry
        return out

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1 and "Fn::If" in node:
                name, when_true, when_false = node["Fn::If"]
                decided = self.condition(name)
                if decided is _UNDECIDED:
                    branches = [self._resolve(when_true), self._resolve(when_false)]
                    kept = [{"Ref": "AWS::NoValue"} if b is _NO_VALUE else b for b in branches]
                    return {"Fn::If": [name, *kept]}
                return self._resolve(when_true if decided else when_false)
            if node == {"Ref": "AWS::NoValue"}:
                return _NO_VALUE
            out = {}
            for key, value in node.items():
                value = self._resolve(value)
                if value is not _NO_VALUE:
                    out[key] = value
            return out
        if isinstance(node, list):
            return [v for v in (self._resolve(item) for item in node) if v is not _NO_VALUE]
        return node

    def _conditions_node(self, node: Any) -> Any:
        """An undecided condition's expression, with the decided conditions it names replaced
        by a literal of their value (the names leave ``Conditions``)."""
        if isinstance(node, dict):
            if len(node) == 1 and "Condition" in node:
                decided = self.decided.get(node["Condition"])
                if decided is not _UNDECIDED:
                    return {"Fn::Equals": ["x", "x" if decided else "y"]}
            return {key: self._conditions_node(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self._conditions_node(item) for item in node]
        return node


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
