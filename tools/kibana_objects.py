#!/usr/bin/env python3
"""Writes kibana/*.ndjson: the data views, Lens panels, saved search and dashboards of iaso-probe.

The NDJSON files are what `iaso-probe setup` imports (they are embedded in the binary) and what
tests/static_kibana.rs checks; this script is only the convenient way to edit them, since Lens
state and dashboard panels are JSON encoded inside JSON. Run it from the repository root:

    python3 tools/kibana_objects.py && cargo test --test static_kibana

Formats (Kibana 8.x saved objects, see README.md, "Run the stack"):
- Lens by reference, `formBased` datasource, typeMigrationVersion 8.9.0;
- dashboards at typeMigrationVersion 8.9.0, panels `panel_<panelIndex>` by reference;
- data views (index-pattern) at 8.0.0, saved search at 8.0.0, coreMigrationVersion 8.8.0.
Kibana >= 8.9 imports all of them and migrates them forward.
"""

import hashlib
import json
import os

# The Kibana version every dashboard panel is stamped with; docker-compose.yml runs this exact
# tag (tests/static_compose.rs checks they agree).
KIBANA_VERSION = "8.14.3"

CORE = "8.8.0"
TYPE_VERSIONS = {"lens": "8.9.0", "dashboard": "8.9.0", "index-pattern": "8.0.0", "search": "8.0.0"}

CHECKS_DV = "iaso-probe-checks"
JOBS_DV = "iaso-probe-jobs"

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kibana")


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def saved_object(type_, id_, attributes, references):
    return {
        "attributes": attributes,
        "coreMigrationVersion": CORE,
        "id": id_,
        "managed": False,
        "references": references,
        "type": type_,
        "typeMigrationVersion": TYPE_VERSIONS[type_],
    }


# ---------------------------------------------------------------------------------------------
# Data views


def duration_format(unit):
    return {
        "id": "duration",
        "params": {
            "inputFormat": unit,
            "outputFormat": "humanizePrecise",
            "outputPrecision": 1,
            "showSuffix": True,
            "useShortSuffix": True,
        },
    }


def data_view(id_, title, name, formats):
    return saved_object(
        "index-pattern",
        id_,
        {
            "allowNoIndex": True,
            "fieldAttrs": "{}",
            "fieldFormatMap": compact(formats),
            "fields": "[]",
            "name": name,
            "runtimeFieldMap": "{}",
            "sourceFilters": "[]",
            "timeFieldName": "@timestamp",
            "title": title,
        },
        [],
    )


DATA_VIEWS = [
    data_view(
        CHECKS_DV,
        # New streams (<type>-<dataset>-<namespace>) and the legacy ones (read only).
        "synthetics-iaso.checks-*,iaso-checks-*",
        "IASO checks",
        {
            "event.duration": duration_format("nanoseconds"),
            "monitor.duration.us": duration_format("microseconds"),
            "state.duration_ms": duration_format("milliseconds"),
            "iaso.limit_ms": duration_format("milliseconds"),
        },
    ),
    data_view(
        JOBS_DV,
        "logs-iaso.jobs-*,iaso-jobs-*",
        "IASO backup & restore jobs",
        {
            "event.duration": duration_format("nanoseconds"),
            "iaso.job.elapsed_s": duration_format("seconds"),
        },
    ),
]

# ---------------------------------------------------------------------------------------------
# Lens columns (formBased datasource)


def kql(query):
    return {"query": query, "language": "kuery"}


def date_histogram():
    return {
        "label": "@timestamp",
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": "@timestamp",
        "isBucketed": True,
        "scale": "interval",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def terms(field, label, size, order_by=None, direction="desc", missing=False, other=False):
    return {
        "label": label,
        "customLabel": True,
        "dataType": "string",
        "operationType": "terms",
        "scale": "ordinal",
        "sourceField": field,
        "isBucketed": True,
        "params": {
            "size": size,
            "orderBy": {"type": "column", "columnId": order_by}
            if order_by
            else {"type": "alphabetical", "fallback": True},
            "orderDirection": direction if order_by else "asc",
            "otherBucket": other,
            "missingBucket": missing,
            "parentFormat": {"id": "terms"},
            "include": [],
            "exclude": [],
            "includeIsRegex": False,
            "excludeIsRegex": False,
        },
    }


def histogram(field, label):
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "range",
        "sourceField": field,
        "isBucketed": True,
        "scale": "interval",
        "params": {
            "includeEmptyRows": True,
            "type": "histogram",
            "ranges": [{"from": 0, "to": 1000, "label": ""}],
            "maxBars": "auto",
        },
    }


def count(label, query=None):
    col = {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "count",
        "isBucketed": False,
        "scale": "ratio",
        "sourceField": "___records___",
        "params": {"emptyAsNull": False},
    }
    if query:
        col["filter"] = kql(query)
    return col


def metric(op, field, label, fmt=None, extra=None):
    params = {"emptyAsNull": True}
    if extra:
        params.update(extra)
    if fmt:
        params["format"] = fmt
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": op,
        "sourceField": field,
        "isBucketed": False,
        "scale": "ratio",
        "params": params,
    }


def last_value(field, label, data_type="string"):
    return {
        "label": label,
        "customLabel": True,
        "dataType": data_type,
        "operationType": "last_value",
        "sourceField": field,
        "isBucketed": False,
        "scale": "ordinal" if data_type == "string" else "ratio",
        "filter": kql(f"{field}: *"),
        "params": {"sortField": "@timestamp", "showArrayValues": False},
    }


PERCENT = {"id": "percent", "params": {"decimals": 1}}
NUMBER0 = {"id": "number", "params": {"decimals": 0}}
NUMBER1 = {"id": "number", "params": {"decimals": 1}}


def formula(col_id, label, text, parts, op, operands, fmt):
    """A Lens formula column `parts[0] <op> parts[1]` (or `parts[0] <op> number`), stored the
    way Lens stores it: hidden sub-columns `<id>X0`, `<id>X1`…, one `math` column holding the
    tinymath AST, and the visible `formula` column referencing the math column."""
    columns = {}
    ids = []
    for i, part in enumerate(parts):
        sub = dict(part, label=f"Part of {label}", customLabel=True)
        sub_id = f"{col_id}X{i}"
        columns[sub_id] = sub
        ids.append(sub_id)
    math_id = f"{col_id}X{len(parts)}"
    args = [ids[i] if isinstance(i, int) else i["number"] for i in operands]
    columns[math_id] = {
        "label": f"Part of {label}",
        "customLabel": True,
        "dataType": "number",
        "operationType": "math",
        "isBucketed": False,
        "scale": "ratio",
        "params": {
            "tinymathAst": {
                "type": "function",
                "name": op,
                "args": args,
                "location": {"min": 0, "max": len(text)},
                "text": text,
            }
        },
        "references": ids,
    }
    columns[col_id] = {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "formula",
        "isBucketed": False,
        "scale": "ratio",
        "params": {"formula": text, "isFormulaBroken": False, "format": fmt},
        "references": [math_id],
    }
    return columns, ids + [math_id]


def formula_ast(col_id, label, text, parts, ast, fmt):
    """A Lens formula column of any tinymath AST: `ast` is nested tuples (op, arg, arg) whose
    leaves are part indexes (int) or numbers ({"number": n})."""
    columns = {}
    ids = []
    for i, part in enumerate(parts):
        sub = dict(part, label=f"Part of {label}", customLabel=True)
        sub_id = f"{col_id}X{i}"
        columns[sub_id] = sub
        ids.append(sub_id)

    def node(n):
        if isinstance(n, int):
            return ids[n]
        if isinstance(n, dict):
            return n["number"]
        op, *args = n
        return {
            "type": "function",
            "name": op,
            "args": [node(a) for a in args],
            "location": {"min": 0, "max": len(text)},
            "text": text,
        }

    math_id = f"{col_id}X{len(parts)}"
    columns[math_id] = {
        "label": f"Part of {label}",
        "customLabel": True,
        "dataType": "number",
        "operationType": "math",
        "isBucketed": False,
        "scale": "ratio",
        "params": {"tinymathAst": node(ast)},
        "references": ids,
    }
    columns[col_id] = {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "formula",
        "isBucketed": False,
        "scale": "ratio",
        "params": {"formula": text, "isFormulaBroken": False, "format": fmt},
        "references": [math_id],
    }
    return columns, ids + [math_id]


def unique_count(field, label, query=None):
    col = {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "unique_count",
        "sourceField": field,
        "isBucketed": False,
        "scale": "ratio",
        "params": {"emptyAsNull": False},
    }
    if query:
        col["filter"] = kql(query)
    return col


DOWN = 'monitor.status : "down"'


def run_availability(col_id, label="Availability (per check run)"):
    """1 - runs with a down document / all runs, a run being one `monitor.check_group`: a
    health pass (one document per component) counts once, like a liveness check."""
    text = f"1 - unique_count(monitor.check_group, kql='{DOWN}') / unique_count(monitor.check_group)"
    return formula_ast(
        col_id,
        label,
        text,
        [unique_count("monitor.check_group", "", DOWN), unique_count("monitor.check_group", "")],
        ("subtract", {"number": 1}, ("divide", 0, 1)),
        PERCENT,
    )


def percentile_ms(col_id, pct):
    text = f"percentile(event.duration, percentile={pct}) / 1000000"
    return formula(
        col_id,
        f"p{pct} (ms)",
        text,
        [metric("percentile", "event.duration", "", extra={"percentile": pct})],
        "divide",
        [0, {"number": 1000000}],
        NUMBER1,
    )


def ratio(col_id, label, num_query, den_query, fmt=PERCENT, op="divide"):
    symbol = "/" if op == "divide" else "-"
    text = f"count(kql='{num_query}') {symbol} count(kql='{den_query}')"
    return formula(
        col_id,
        label,
        text,
        [count("", num_query), count("", den_query)],
        op,
        [0, 1],
        fmt,
    )


# ---------------------------------------------------------------------------------------------
# Lens objects


class Layer:
    """Columns of one formBased layer, in display order (formula helpers add hidden ones)."""

    def __init__(self):
        self.columns = {}
        self.order = []

    def add(self, col_id, column):
        self.columns[col_id] = column
        self.order.append(col_id)
        return col_id

    def add_formula(self, built):
        columns, hidden = built
        visible = [c for c in columns if c not in hidden][0]
        self.columns.update(columns)
        self.order.append(visible)
        self.order.extend(hidden)
        return visible

    def state(self):
        return {
            "columns": self.columns,
            "columnOrder": self.order,
            "incompleteColumns": {},
            "sampling": 1,
        }


LAYER = "layer-0"

XY_DEFAULTS = {
    "legend": {"isVisible": True, "position": "right"},
    "valueLabels": "hide",
    "fittingFunction": "None",
    "axisTitlesVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
    "tickLabelsVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
    "labelsOrientation": {"x": 0, "yLeft": 0, "yRight": 0},
    "gridlinesVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
}


def lens(id_, title, description, data_view_id, vis_type, visualization, layer, query=""):
    return saved_object(
        "lens",
        id_,
        {
            "description": description,
            "state": {
                "adHocDataViews": {},
                "datasourceStates": {"formBased": {"layers": {LAYER: layer.state()}}},
                "filters": [],
                "internalReferences": [],
                "query": kql(query),
                "visualization": visualization,
            },
            "title": title,
            "visualizationType": vis_type,
        },
        [
            {
                "id": data_view_id,
                "name": f"indexpattern-datasource-layer-{LAYER}",
                "type": "index-pattern",
            }
        ],
    )


def metric_vis(accessor):
    return {"layerId": LAYER, "layerType": "data", "metricAccessor": accessor}


def xy_vis(series, x, accessors, split=None, colors=None):
    layer = {
        "layerId": LAYER,
        "layerType": "data",
        "seriesType": series,
        "xAccessor": x,
        "accessors": accessors,
    }
    if split:
        layer["splitAccessor"] = split
    if colors:
        layer["yConfig"] = [{"forAccessor": a, "color": c} for a, c in colors.items()]
    return dict(XY_DEFAULTS, preferredSeriesType=series, layers=[layer])


def heatmap_vis(x, y, value):
    return {
        "layerId": LAYER,
        "layerType": "data",
        "shape": "heatmap",
        "xAccessor": x,
        "yAccessor": y,
        "valueAccessor": value,
        "legend": {"isVisible": True, "position": "right", "type": "heatmap_legend"},
        "gridConfig": {
            "type": "heatmap_grid",
            "isCellLabelVisible": False,
            "isYAxisLabelVisible": True,
            "isXAxisLabelVisible": True,
            "isYAxisTitleVisible": False,
            "isXAxisTitleVisible": False,
        },
    }


def table_vis(columns, sort_by=None, direction="desc"):
    vis = {
        "layerId": LAYER,
        "layerType": "data",
        "columns": [{"columnId": c, "isTransposed": False} for c in columns],
    }
    if sort_by:
        vis["sorting"] = {"columnId": sort_by, "direction": direction}
    return vis


GREEN, RED, ORANGE, BLUE, GREY, PURPLE = "#54B399", "#E7664C", "#D6BF57", "#6092C0", "#98A2B3", "#9170B8"

# --- service availability (iaso-checks-*) ------------------------------------------------------

RESPONSE_TIME = 'event.action : "response_time"'
AUTH_FAILED = 'event.action : "auth" and event.outcome : "failure"'


def availability_lenses():
    out = []

    layer = Layer()
    a = layer.add_formula(run_availability("availability", "Availability"))
    out.append(
        lens(
            "iaso-availability-overall",
            "Availability per check run (all checks)",
            "Share of check runs (monitor.check_group) with no monitor down: a health pass counts "
            "once, whatever its number of components.",
            CHECKS_DV,
            "lnsMetric",
            metric_vis(a),
            layer,
        )
    )

    layer = Layer()
    d = layer.add("down", count("Checks down", DOWN))
    out.append(
        lens(
            "iaso-checks-down-total",
            "Checks down",
            "Number of check results that declared a monitor down (monitor.status down).",
            CHECKS_DV,
            "lnsMetric",
            metric_vis(d),
            layer,
        )
    )

    layer = Layer()
    f = layer.add("auth-failures", count("Authentication failures"))
    out.append(
        lens(
            "iaso-auth-failures-total",
            "Authentication failures",
            "Failed authentications (event.action auth, event.outcome failure).",
            CHECKS_DV,
            "lnsMetric",
            metric_vis(f),
            layer,
            AUTH_FAILED,
        )
    )

    layer = Layer()
    p = layer.add_formula(percentile_ms("p95", 95))
    out.append(
        lens(
            "iaso-response-time-p95",
            "Response time p95 (ms)",
            "95th percentile of the response-time check duration, in milliseconds.",
            CHECKS_DV,
            "lnsMetric",
            metric_vis(p),
            layer,
            RESPONSE_TIME,
        )
    )

    layer = Layer()
    mon = layer.add("monitor", terms("monitor.id", "Monitor", 200))
    env = layer.add("env", last_value("service.environment", "Environment"))
    status = layer.add("status", last_value("state.status", "Status"))
    since = layer.add("since", last_value("state.started_at", "Since (down since when down)", "date"))
    checks = layer.add("checks", last_value("state.checks", "Checks in this state", "number"))
    last = layer.add("last", last_value("@timestamp", "Last check", "date"))
    err = layer.add("error", last_value("error.message.keyword", "Last error"))
    out.append(
        lens(
            "iaso-current-status",
            "Current status per monitor (down since)",
            "Latest state of each monitor (state.status up / down / flap, Heartbeat's flap "
            "threshold of 3), since when it holds (state.started_at: for a down monitor, down "
            "since), how many checks it lasted, the last check and its error.",
            CHECKS_DV,
            "lnsDatatable",
            table_vis([mon, env, status, since, checks, last, err], sort_by=status, direction="asc"),
            layer,
        )
    )

    layer = Layer()
    mon = layer.add("monitor", terms("monitor.id", "Monitor", 200))
    avail = layer.add("availability", metric("average", "summary.up", "Availability", PERCENT))
    runs = layer.add("runs", unique_count("monitor.check_group", "Check runs"))
    down = layer.add("down", count("Down", DOWN))
    out.append(
        lens(
            "iaso-availability-by-monitor",
            "Availability per monitor",
            "Per monitor (monitor.id: environment + check, or health component), the share of "
            "its check runs that were up (summary.up, final attempts only): one liveness outage "
            "is 0 % for that liveness monitor, whatever the other checks did.",
            CHECKS_DV,
            "lnsDatatable",
            table_vis([mon, avail, runs, down], sort_by=avail, direction="asc"),
            layer,
            "summary.final_attempt : true",
        )
    )

    layer = Layer()
    ts = layer.add("ts", date_histogram())
    mon = layer.add("monitor", terms("monitor.id", "Monitor", 50))
    worst = layer.add("worst", metric("min", "summary.up", "Up (0 = down in the interval)", NUMBER0))
    out.append(
        lens(
            "iaso-status-heatmap",
            "Status over time per monitor",
            "One row per monitor, one cell per time interval: 1 when every check of the "
            "interval was up, 0 when at least one was down (min of summary.up).",
            CHECKS_DV,
            "lnsHeatmap",
            heatmap_vis(ts, mon, worst),
            layer,
        )
    )

    layer = Layer()
    env = layer.add("env", terms("service.environment", "Environment", 20))
    check = layer.add("check", terms("event.action", "Check", 10))
    avail = layer.add_formula(run_availability("availability"))
    runs = layer.add("runs", unique_count("monitor.check_group", "Check runs"))
    down = layer.add("down", unique_count("monitor.check_group", "Runs with a monitor down", DOWN))
    out.append(
        lens(
            "iaso-availability-by-check",
            "Availability per environment and check (per check run)",
            "Per environment and check (event.action), the share of check runs "
            "(monitor.check_group) without any monitor down.",
            CHECKS_DV,
            "lnsDatatable",
            table_vis([env, check, avail, runs, down], sort_by=avail, direction="asc"),
            layer,
        )
    )

    layer = Layer()
    ts = layer.add("ts", date_histogram())
    p50 = layer.add_formula(percentile_ms("p50", 50))
    p95 = layer.add_formula(percentile_ms("p95", 95))
    p99 = layer.add_formula(percentile_ms("p99", 99))
    limit = layer.add("limit", metric("max", "iaso.limit_ms", "Limit (ms)", NUMBER0))
    out.append(
        lens(
            "iaso-response-time-percentiles",
            "Response time p50 / p95 / p99 vs limit (ms)",
            "Percentiles of event.duration of the response_time checks, in ms, against the "
            "configured limit (iaso.limit_ms).",
            CHECKS_DV,
            "lnsXY",
            xy_vis(
                "line",
                ts,
                [p50, p95, p99, limit],
                colors={p50: BLUE, p95: ORANGE, p99: PURPLE, limit: RED},
            ),
            layer,
            RESPONSE_TIME,
        )
    )

    layer = Layer()
    cnt = "count"
    comp = layer.add("component", terms("iaso.health.component", "Component", 20, order_by=cnt))
    status = layer.add("status", terms("iaso.health.status", "Status", 5, order_by=cnt))
    layer.add(cnt, count("Health results"))
    out.append(
        lens(
            "iaso-health-components",
            "Health components by status",
            "Health check results per component (iaso.health.component), split by the status "
            "the API reported (iaso.health.status).",
            CHECKS_DV,
            "lnsXY",
            xy_vis("bar_horizontal_stacked", comp, [cnt], split=status),
            layer,
            'event.action : "health"',
        )
    )

    layer = Layer()
    ts = layer.add("ts", date_histogram())
    env = layer.add("env", terms("service.environment", "Environment", 10, order_by="failures"))
    layer.add("failures", count("Authentication failures"))
    out.append(
        lens(
            "iaso-auth-failures-over-time",
            "Authentication failures over time",
            "Failed authentications per environment (event.action auth, event.outcome failure).",
            CHECKS_DV,
            "lnsXY",
            xy_vis("bar_stacked", ts, ["failures"], split=env),
            layer,
            AUTH_FAILED,
        )
    )
    return out


LATEST_ERRORS = saved_object(
    "search",
    "iaso-latest-errors",
    {
        "columns": [
            "service.environment",
            "event.action",
            "error.type",
            "error.message",
            "http.response.status_code",
            "monitor.id",
            "state.status",
        ],
        "description": "Latest check results carrying an error, newest first.",
        "grid": {},
        "hideChart": True,
        "isTextBasedQuery": False,
        "kibanaSavedObjectMeta": {
            "searchSourceJSON": compact(
                {
                    "query": kql("error.type : *"),
                    "filter": [],
                    "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
                }
            )
        },
        "sort": [["@timestamp", "desc"]],
        "title": "IASO — latest errors",
    },
    [
        {
            "id": CHECKS_DV,
            "name": "kibanaSavedObjectMeta.searchSourceJSON.index",
            "type": "index-pattern",
        }
    ],
)

# --- backup & restore jobs (iaso-jobs-*) -------------------------------------------------------

LAUNCHED = 'event.action : ("backup.launch" or "restore.launch") and event.outcome : "success"'
LAUNCH_FAILED = 'event.action : ("backup.launch" or "restore.launch") and event.outcome : "failure"'
ENDED = 'event.action : "job.end"'


def ended(result):
    return f'event.action : "job.end" and iaso.job.result : "{result}"'


FAILED_ANY = (
    '(event.action : "job.end" and iaso.job.result : ("failure" or "timeout" or "poll_failed" '
    'or "cancelled")) or (event.action : ("backup.launch" or "restore.launch") and '
    'event.outcome : "failure")'
)


def job_series(layer):
    """Launched / succeeded / warning / failed / timed out / launch failed, as filtered counts."""
    ids = {
        "launched": layer.add("launched", count("Launched", LAUNCHED)),
        "succeeded": layer.add("succeeded", count("Succeeded", ended("success"))),
        "warning": layer.add("warning", count("Succeeded with warnings", ended("warning"))),
        "failed": layer.add("failed", count("Failed", ended("failure"))),
        "timeout": layer.add("timeout", count("Timed out", ended("timeout"))),
        "launch_failed": layer.add("launch-failed", count("Launch failed", LAUNCH_FAILED)),
    }
    return ids


def jobs_lenses():
    out = []

    layer = Layer()
    m = layer.add("launched", count("Jobs launched", LAUNCHED))
    out.append(
        lens(
            "iaso-jobs-launched-total",
            "Jobs launched",
            "Backups and restores the API accepted (backup.launch / restore.launch, success).",
            JOBS_DV,
            "lnsMetric",
            metric_vis(m),
            layer,
        )
    )

    layer = Layer()
    m = layer.add_formula(ratio("success-rate", "Success rate", ended("success"), ENDED))
    out.append(
        lens(
            "iaso-jobs-success-rate",
            "Job success rate",
            "Jobs ended with iaso.job.result success / all ended jobs (job.end).",
            JOBS_DV,
            "lnsMetric",
            metric_vis(m),
            layer,
        )
    )

    layer = Layer()
    m = layer.add_formula(
        ratio("running", "Jobs still running", LAUNCHED, ENDED, fmt=NUMBER0, op="subtract")
    )
    out.append(
        lens(
            "iaso-jobs-running-total",
            "Jobs still running",
            "Jobs launched minus jobs ended (job.end) in the selected time range.",
            JOBS_DV,
            "lnsMetric",
            metric_vis(m),
            layer,
        )
    )

    layer = Layer()
    m = layer.add("failed", count("Jobs failed or timed out", FAILED_ANY))
    out.append(
        lens(
            "iaso-jobs-failed-total",
            "Jobs failed or timed out",
            "job.end with result failure, timeout, poll_failed or cancelled, plus failed launches.",
            JOBS_DV,
            "lnsMetric",
            metric_vis(m),
            layer,
        )
    )

    layer = Layer()
    ts = layer.add("ts", date_histogram())
    s = job_series(layer)
    out.append(
        lens(
            "iaso-jobs-over-time",
            "Jobs launched / succeeded / failed / timed out over time",
            "Launches (backup.launch / restore.launch) and job ends (job.end) by iaso.job.result.",
            JOBS_DV,
            "lnsXY",
            xy_vis(
                "bar",
                ts,
                list(s.values()),
                colors={
                    s["launched"]: BLUE,
                    s["succeeded"]: GREEN,
                    s["warning"]: ORANGE,
                    s["failed"]: RED,
                    s["timeout"]: PURPLE,
                    s["launch_failed"]: GREY,
                },
            ),
            layer,
        )
    )

    layer = Layer()
    env = layer.add("env", terms("service.environment", "Environment", 20))
    s = job_series(layer)
    rate = layer.add_formula(ratio("success-rate", "Success rate", ended("success"), ENDED))
    running = layer.add_formula(
        ratio("running", "Still running", LAUNCHED, ENDED, fmt=NUMBER0, op="subtract")
    )
    out.append(
        lens(
            "iaso-jobs-by-environment",
            "Jobs per environment",
            "Launched, ended by result, success rate and jobs still running (launched - ended) "
            "per environment.",
            JOBS_DV,
            "lnsDatatable",
            table_vis([env] + list(s.values()) + [rate, running], sort_by=env, direction="asc"),
            layer,
        )
    )

    layer = Layer()
    dur = layer.add("duration", histogram("event.duration", "Job duration"))
    kind = layer.add("kind", terms("iaso.job.kind", "Kind", 2))
    layer.add("jobs", count("Jobs"))
    out.append(
        lens(
            "iaso-job-duration",
            "Job duration distribution",
            "Whole-job duration (event.duration of job.end), backups and restores.",
            JOBS_DV,
            "lnsXY",
            xy_vis("bar_stacked", dur, ["jobs"], split=kind),
            layer,
            ENDED,
        )
    )

    layer = Layer()
    host = layer.add("host", terms("host.name", "Host", 10, order_by="failures"))
    layer.add("failures", count("Failed jobs"))
    out.append(
        lens(
            "iaso-top-failing-hosts",
            "Top failing hosts",
            "Hosts (host.name) with the most failed, timed-out or cancelled jobs and failed "
            "launches.",
            JOBS_DV,
            "lnsXY",
            xy_vis("bar_horizontal", host, ["failures"], colors={"failures": RED}),
            layer,
            FAILED_ANY,
        )
    )

    layer = Layer()
    etype = layer.add("type", terms("error.type", "Error type", 10, order_by="failures", missing=True))
    reason = layer.add(
        "reason",
        terms("iaso.job.failure_reason", "Failure reason (API)", 20, order_by="failures", missing=True),
    )
    message = layer.add(
        "message",
        terms("error.message.keyword", "Error message", 20, order_by="failures", missing=True),
    )
    layer.add("failures", count("Failures"))
    out.append(
        lens(
            "iaso-job-failure-reasons",
            "Failure reasons",
            "Error type, failure reason reported by the API (iaso.job.failure_reason) and the "
            "prober's error message, for failed jobs and launches.",
            JOBS_DV,
            "lnsDatatable",
            table_vis([etype, reason, message, "failures"], sort_by="failures"),
            layer,
            FAILED_ANY,
        )
    )

    layer = Layer()
    trace = layer.add(
        "trace", terms("trace.id", "Job flow (trace.id)", 50, order_by="ended", direction="asc")
    )
    env = layer.add("env", last_value("service.environment", "Environment"))
    run = layer.add("run", last_value("labels.run_id", "Run"))
    job = layer.add("job", last_value("iaso.job.id", "Job id"))
    host = layer.add("host", last_value("host.name", "Host"))
    kind = layer.add("kind", last_value("iaso.job.kind", "Kind"))
    status = layer.add("status", last_value("iaso.job.status", "Latest status"))
    pct = layer.add("percent", last_value("iaso.job.percent", "Percent", "number"))
    end = layer.add("ended", count("Ended", ENDED))
    out.append(
        lens(
            "iaso-jobs-latest-status",
            "Latest status per job (running first)",
            "Latest iaso.job.status per job flow (trace.id: one per launch, so job ids the "
            "portal reuses across environments and runs never merge); jobs with no job.end "
            "yet (Ended = 0) are still running and come first.",
            JOBS_DV,
            "lnsDatatable",
            table_vis(
                [trace, env, run, job, host, kind, status, pct, end], sort_by=end, direction="asc"
            ),
            layer,
        )
    )

    layer = Layer()
    host = layer.add("host", terms("host.name", "Host", 100, order_by="when", direction="desc"))
    when = layer.add("when", last_value("@timestamp", "Last failure", "date"))
    env = layer.add("env", last_value("service.environment", "Environment"))
    etype = layer.add("type", last_value("error.type", "Error type"))
    msg = layer.add("message", last_value("error.message.keyword", "Error message"))
    job = layer.add("job", last_value("iaso.job.id", "Job id"))
    out.append(
        lens(
            "iaso-last-failure-per-host",
            "Last failure per host",
            "For each host (host.name), its latest failed job or launch: when, error type and "
            "message, job id.",
            JOBS_DV,
            "lnsDatatable",
            table_vis([host, when, env, etype, msg, job], sort_by=when, direction="desc"),
            layer,
            FAILED_ANY,
        )
    )

    layer = Layer()
    host = layer.add("host", terms("host.name", "Host", 100))
    env = layer.add("env", terms("service.environment", "Environment", 20))
    s = job_series(layer)
    rate = layer.add_formula(ratio("success-rate", "Success rate", ended("success"), ENDED))
    out.append(
        lens(
            "iaso-jobs-by-host",
            "Jobs per host",
            "Per host and environment: launched, ended by result and success rate (pick hosts "
            "with the Host control above).",
            JOBS_DV,
            "lnsDatatable",
            table_vis([host, env] + list(s.values()) + [rate], sort_by=rate, direction="asc"),
            layer,
        )
    )
    return out


# ---------------------------------------------------------------------------------------------
# Dashboards


# The dashboards' version: `setup` reads it back from Kibana and imports a file again only when
# it differs (edits made in Kibana survive a re-run of setup). It is the hash of the file with
# the marker itself replaced by VERSION_PLACEHOLDER (tests/static_kibana.rs recomputes it).
VERSION_PLACEHOLDER = "<version>"


def version_marker(version):
    return f"[iaso-probe dashboards {version}]"


def dashboard(id_, title, description, data_view_id, rows, controls_=(("environment", "service.environment", "Environment"),)):
    """`rows`: list of rows, each a list of (saved object, width) placed left to right; the
    row height is the tallest of its panels' natural heights."""
    panels, references = [], []
    y = 0
    for height, row in rows:
        x = 0
        for obj, width in row:
            index = obj["id"].removeprefix("iaso-")
            panels.append(
                {
                    "version": KIBANA_VERSION,
                    "type": obj["type"],
                    "gridData": {"x": x, "y": y, "w": width, "h": height, "i": index},
                    "panelIndex": index,
                    "embeddableConfig": {"enhancements": {}},
                    "panelRefName": f"panel_{index}",
                }
            )
            references.append(
                {"id": obj["id"], "name": f"{index}:panel_{index}", "type": obj["type"]}
            )
            x += width
        y += height
    controls = {}
    for order, (control, field, label) in enumerate(controls_):
        controls[control] = {
            "order": order,
            "width": "medium",
            "grow": True,
            "type": "optionsListControl",
            "explicitInput": {
                "id": control,
                "fieldName": field,
                "title": label,
                "selectedOptions": [],
                "enhancements": {},
            },
        }
        references.append(
            {
                "id": data_view_id,
                "name": f"controlGroup_{control}:optionsListDataView",
                "type": "index-pattern",
            }
        )
    return saved_object(
        "dashboard",
        id_,
        {
            "controlGroupInput": {
                "chainingSystem": "HIERARCHICAL",
                "controlStyle": "oneLine",
                "ignoreParentSettingsJSON": compact(
                    {
                        "ignoreFilters": False,
                        "ignoreQuery": False,
                        "ignoreTimerange": False,
                        "ignoreValidations": False,
                    }
                ),
                "panelsJSON": compact(controls),
            },
            "description": f"{description} {version_marker(VERSION_PLACEHOLDER)}",
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": compact({"query": kql(""), "filter": []})
            },
            "optionsJSON": compact(
                {
                    "useMargins": True,
                    "syncColors": False,
                    "syncCursor": True,
                    "syncTooltips": False,
                    "hidePanelTitles": False,
                }
            ),
            "panelsJSON": compact(panels),
            "refreshInterval": {"pause": False, "value": 60000},
            "timeFrom": "now-24h",
            "timeRestore": True,
            "timeTo": "now",
            "title": title,
            "version": 1,
        },
        references,
    )


def write(name, objects):
    path = os.path.join(OUT, name)
    text = "".join(compact(obj) + "\n" for obj in objects)
    placeholder = version_marker(VERSION_PLACEHOLDER)
    if placeholder in text:
        version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        text = text.replace(placeholder, version_marker(version))
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {len(objects)} objects to kibana/{name}")


def main():
    by_id = {}

    avail = availability_lenses()
    by_id.update({o["id"]: o for o in avail})
    service = dashboard(
        "iaso-service-availability",
        "IASO — service availability",
        "Liveness, health, response time and authentication checks of the IASO API: "
        "availability per monitor and per check run, current status with down since, status "
        "over time.",
        CHECKS_DV,
        [
            (
                7,
                [
                    (by_id["iaso-availability-overall"], 12),
                    (by_id["iaso-checks-down-total"], 12),
                    (by_id["iaso-response-time-p95"], 12),
                    (by_id["iaso-auth-failures-total"], 12),
                ],
            ),
            (
                15,
                [
                    (by_id["iaso-current-status"], 30),
                    (by_id["iaso-availability-by-monitor"], 18),
                ],
            ),
            (14, [(by_id["iaso-status-heatmap"], 48)]),
            (
                13,
                [
                    (by_id["iaso-availability-by-check"], 20),
                    (by_id["iaso-response-time-percentiles"], 28),
                ],
            ),
            (
                13,
                [
                    (by_id["iaso-health-components"], 24),
                    (by_id["iaso-auth-failures-over-time"], 24),
                ],
            ),
            (15, [(LATEST_ERRORS, 48)]),
        ],
        (
            ("environment", "service.environment", "Environment"),
            ("monitor", "monitor.id", "Monitor"),
        ),
    )

    jobs = jobs_lenses()
    by_id.update({o["id"]: o for o in jobs})
    jobs_dash = dashboard(
        "iaso-backup-restore-jobs",
        "IASO — backup & restore jobs",
        "Backups and restores launched by the prober: outcomes, durations, failure reasons, "
        "last failure per host and jobs still running, per environment and host.",
        JOBS_DV,
        [
            (
                7,
                [
                    (by_id["iaso-jobs-launched-total"], 12),
                    (by_id["iaso-jobs-success-rate"], 12),
                    (by_id["iaso-jobs-failed-total"], 12),
                    (by_id["iaso-jobs-running-total"], 12),
                ],
            ),
            (14, [(by_id["iaso-jobs-over-time"], 48)]),
            (10, [(by_id["iaso-jobs-by-environment"], 48)]),
            (
                13,
                [
                    (by_id["iaso-job-duration"], 24),
                    (by_id["iaso-top-failing-hosts"], 24),
                ],
            ),
            (
                14,
                [
                    (by_id["iaso-last-failure-per-host"], 28),
                    (by_id["iaso-jobs-by-host"], 20),
                ],
            ),
            (
                15,
                [
                    (by_id["iaso-job-failure-reasons"], 20),
                    (by_id["iaso-jobs-latest-status"], 28),
                ],
            ),
        ],
        (
            ("environment", "service.environment", "Environment"),
            ("host", "host.name", "Host"),
        ),
    )

    write("iaso-data-views.ndjson", DATA_VIEWS)
    write("iaso-service-availability.ndjson", avail + [LATEST_ERRORS, service])
    write("iaso-backup-restore-jobs.ndjson", jobs + [jobs_dash])


if __name__ == "__main__":
    main()
