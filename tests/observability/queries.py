"""The PromQL of k8s/observability: every query of the dashboards and rules, and the metric
names each one selects. Standard library only; shared by //tests/observability:files_test and
//tests/integration:observability_test.

metric_names() reads PromQL as Prometheus' lexer does, enough to tell metric names from
everything else: string literals, label matchers `{...}` (except a `__name__` matcher's
value), range and subquery brackets `[...]`, grouping lists (`by`, `without`, `on`, `ignoring`,
`group_left`, `group_right`), function calls, aggregation operators, keywords, numbers and
durations. Grafana's template variables (`$x`, `${x}`, `[[x]]`) are taken out first.
"""

import json
import re

import yaml

_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                 "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?
               (?:(?:ms|[smhdwy])(?:[0-9]+(?:ms|[smhdwy]))*)?)
  | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<punct>=~|!~|!=|==|<=|>=|[-+*/%^=<>(){}\[\],@])
""", re.VERBOSE)
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*|\[\[[^\]]*\]\]")


class PromqlError(ValueError):
    pass


def _tokens(expr):
    pos, out = 0, []
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise PromqlError(f"unexpected {expr[pos:pos + 20]!r} at {pos} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


def _skip(tokens, i, open_, close):
    """The index after the bracket closing the one at tokens[i] (which is `open_`)."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j] == ("punct", open_):
            depth += 1
        elif tokens[j] == ("punct", close):
            depth -= 1
            if depth == 0:
                return j + 1
    raise PromqlError(f"unbalanced {open_}")


def _unquote(literal):
    if literal[0] == "`":
        return literal[1:-1]
    return json.loads('"' + literal[1:-1].replace('\\"', '"').replace('"', '\\"') + '"')


def metric_names(expr):
    """The set of metric names `expr` (PromQL, possibly with Grafana variables) selects."""
    # A variable stands for a value: a label value in a string, or a duration in brackets
    # ($__rate_interval), where any number will do.
    text = _VARIABLE.sub(lambda m: "1m" if m.group() .startswith("$__") else "x", expr)
    tokens = _tokens(text)
    names, i = set(), 0
    while i < len(tokens):
        kind, value = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, None)
        if (kind, value) == ("punct", "{"):
            end = _skip(tokens, i, "{", "}")
            body = tokens[i + 1:end - 1]
            for k in range(len(body) - 2):
                if body[k] == ("name", "__name__") and body[k + 1] == ("punct", "=") \
                        and body[k + 2][0] == "string":
                    names.add(_unquote(body[k + 2][1]))
            i = end
        elif (kind, value) == ("punct", "["):
            i = _skip(tokens, i, "[", "]")
        elif kind == "name" and value in _GROUPING:
            i += 1
            if i < len(tokens) and tokens[i] == ("punct", "("):
                i = _skip(tokens, i, "(", ")")
        elif kind == "name" and (nxt == ("punct", "(") or value in _AGGREGATIONS
                                 or value.lower() in _KEYWORDS):
            i += 1
        elif kind == "name":
            names.add(value)
            i += 1
        else:
            i += 1
    return names


_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$", re.S)


def variable_expr(query):
    """The PromQL part of a Grafana Prometheus variable query: label_values(EXPR, label) →
    EXPR; label_values(label) → None; query_result(EXPR) → EXPR; else the query itself."""
    m = _LABEL_VALUES.match(query)
    if m:
        return m.group(1)
    if re.match(r"^\s*label_values\(\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$", query):
        return None
    m = re.match(r"^\s*query_result\((.*)\)\s*$", query, re.S)
    return m.group(1) if m else query


def dashboard_queries(dashboard):
    """[(where, PromQL)] of a dashboard's panels (rows' nested ones too) and variables."""
    out = []

    def panels(items):
        for p in items:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
            panels(p.get("panels", []))
    panels(dashboard.get("panels", []))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            expr = variable_expr(query)
            if expr is not None:
                out.append((f"variable {v['name']}", expr))
    return out


def rule_queries(groups):
    """[(where, PromQL)] of a rules file's parsed content ({"groups": [...]})."""
    return [(f"rule {r.get('record') or r.get('alert')}", r["expr"])
            for g in groups["groups"] for r in g["rules"]]


def recorded_names(groups):
    return {r["record"] for g in groups["groups"] for r in g["rules"] if "record" in r}


def load_rules(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_dashboard(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def exposed_names(text):
    """Metric names of the samples in a Prometheus text exposition (histograms as their
    _bucket, _sum and _count series)."""
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group())
    return names
