#!/usr/bin/env python3
"""Writes meshlet's Grafana dashboards and Prometheus rules (docs/observability.md) from the
definitions below, next to this script:

  rules.yaml                 recording and alert rules, a plain Prometheus rules file
  prometheus-rule.yaml       the same groups as a prometheus-operator PrometheusRule
  dashboards/meshlet-*.json  the mesh, service, workload and control-plane dashboards

Run it after changing a definition: python3 k8s/observability/generate.py
//tests/observability:files_test fails when the files differ from what it writes.

Labels the rules and dashboards rely on (scrape-config.yaml and pod-monitors.yaml set them):
sidecar targets carry `namespace`, `pod` and `workload` (the pod's meshlet service name) and
the job `meshlet-sidecars`; control-plane targets the job `meshlet-control-plane`. The
destination of a sidecar's series comes from its `cluster` label
(`outbound|PORT|SUBSET|SERVICE.NAMESPACE`).
"""

import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = "docs/observability.md"
WINDOW = "2m"  # the recording rules' rate window: at least four scrapes at 30 s

# --- Recording rules -------------------------------------------------------------------------

OUTBOUND = 'cluster=~"outbound[|].*"'
EDGE = "namespace, workload, destination_service, destination_namespace"
SERVICE = "destination_service, destination_namespace"


# outbound|PORT|SUBSET|SERVICE.NAMESPACE (a Service name may hold dots, a namespace not).
CLUSTER_SERVICE = "outbound[|][0-9]+[|][^|]*[|](.+)[.][^.]+"
CLUSTER_NAMESPACE = "outbound[|][0-9]+[|][^|]*[|].+[.]([^.]+)"


def by_destination(expr):
    """`expr` with destination_service and destination_namespace taken from its cluster label."""
    return ('label_replace(label_replace(\n'
            f'    {expr},\n'
            f'    "destination_service", "$1", "cluster", "{CLUSTER_SERVICE}"),\n'
            f'  "destination_namespace", "$1", "cluster", "{CLUSTER_NAMESPACE}")')


def edge_rate(metric, extra=""):
    return (f"sum by ({EDGE}{extra}) (\n  " +
            by_destination(f"rate({metric}{{{OUTBOUND}}}[{WINDOW}])") + ")")


def success_ratio(requests, labels):
    # A destination whose requests all succeeded has no failure series (registered on first
    # failure): its ratio is 1, not absent.
    return (f"1 - (\n  sum by ({labels}) ({requests}{{outcome=\"failure\"}})\n"
            f"    / sum by ({labels}) ({requests})\n"
            f"  or sum by ({labels}) ({requests}) * 0)")


def quantiles(record, buckets):
    return [{"record": record, "expr": f"histogram_quantile({q}, {buckets})",
             "labels": {"quantile": q}} for q in ("0.5", "0.95", "0.99")]


ROUTE = "route, rule, service"
EDGE_BUCKETS = f"meshlet:edge_request_duration_seconds_bucket:rate{WINDOW}"
ROUTE_BUCKETS = f"meshlet:route_request_duration_seconds_bucket:rate{WINDOW}"
SERVICE_BUCKETS = f"meshlet:service_request_duration_seconds_bucket:rate{WINDOW}"

# Rules of a group are evaluated in order: each may read those above it.
RECORDING = [
    {"record": f"meshlet:edge_requests:rate{WINDOW}",
     "expr": edge_rate("meshlet_upstream_rq_duration_seconds_count", ", outcome")},
    {"record": f"meshlet:edge_success_ratio:rate{WINDOW}",
     "expr": success_ratio(f"meshlet:edge_requests:rate{WINDOW}", EDGE)},
    # The raw buckets are read once, here; every latency rule below reads this.
    {"record": EDGE_BUCKETS,
     "expr": edge_rate("meshlet_upstream_rq_duration_seconds_bucket", ", le")},
    *quantiles(f"meshlet:edge_request_duration_seconds:quantile{WINDOW}", EDGE_BUCKETS),
    {"record": f"meshlet:edge_tx_bytes:rate{WINDOW}",
     "expr": edge_rate("meshlet_upstream_tx_bytes_total")},
    {"record": f"meshlet:edge_rx_bytes:rate{WINDOW}",
     "expr": edge_rate("meshlet_upstream_rx_bytes_total")},
    {"record": f"meshlet:edge_connections:rate{WINDOW}",
     "expr": edge_rate("meshlet_upstream_cx_total")},
    {"record": f"meshlet:service_requests:rate{WINDOW}",
     "expr": f"sum by ({SERVICE}) (meshlet:edge_requests:rate{WINDOW})"},
    {"record": f"meshlet:service_success_ratio:rate{WINDOW}",
     "expr": success_ratio(f"meshlet:edge_requests:rate{WINDOW}", SERVICE)},
    {"record": SERVICE_BUCKETS, "expr": f"sum by ({SERVICE}, le) ({EDGE_BUCKETS})"},
    *quantiles(f"meshlet:service_request_duration_seconds:quantile{WINDOW}", SERVICE_BUCKETS),
    # Route rules (docs/stats.md#route-rules): `route` KIND/NAMESPACE/NAME, `rule` its index,
    # `service` the destination it served (reviews.default); callers summed.
    {"record": f"meshlet:route_requests:rate{WINDOW}",
     "expr": f"sum by ({ROUTE}, outcome) (rate(meshlet_route_rq_duration_seconds_count[{WINDOW}]))"},
    {"record": f"meshlet:route_success_ratio:rate{WINDOW}",
     "expr": success_ratio(f"meshlet:route_requests:rate{WINDOW}", ROUTE)},
    {"record": ROUTE_BUCKETS,
     "expr": f"sum by ({ROUTE}, le) (rate(meshlet_route_rq_duration_seconds_bucket[{WINDOW}]))"},
    *quantiles(f"meshlet:route_request_duration_seconds:quantile{WINDOW}", ROUTE_BUCKETS),
]

# --- Alerts ----------------------------------------------------------------------------------

SERVICE_REQUESTS = f"meshlet:service_requests:rate{WINDOW}"
# A service's alerts need this much traffic: a few failures of a rare call are noise.
MIN_RPS = "0.1"


def alert(name, expr, severity, summary, description, wait):
    return {"alert": name, "expr": expr, "for": wait,
            "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description,
                            "runbook_url": f"{DOCS}#{name.lower()}"}}


ALERTS = [
    alert("MeshletServiceSuccessRateLow",
          f"meshlet:service_success_ratio:rate{WINDOW} < 0.99\n"
          f"and on ({SERVICE}) {SERVICE_REQUESTS} > {MIN_RPS}", "warning",
          "{{ $labels.destination_service }}.{{ $labels.destination_namespace }} succeeds on "
          "{{ $value | humanizePercentage }} of its requests",
          "Under the 99 % objective for 5 minutes, as its callers' sidecars see it. "
          "meshctl stat and the service dashboard show which callers fail.", "5m"),
    alert("MeshletServiceSuccessRateCritical",
          f"meshlet:service_success_ratio:rate{WINDOW} < 0.9\n"
          f"and on ({SERVICE}) {SERVICE_REQUESTS} > {MIN_RPS}", "critical",
          "{{ $labels.destination_service }}.{{ $labels.destination_namespace }} succeeds on "
          "{{ $value | humanizePercentage }} of its requests",
          "More than one request in ten fails, for 5 minutes.", "5m"),
    alert("MeshletServiceLatencyHigh",
          f"meshlet:service_request_duration_seconds:quantile{WINDOW}{{quantile=\"0.99\"}} > 1\n"
          f"and on ({SERVICE}) {SERVICE_REQUESTS} > {MIN_RPS}", "warning",
          "{{ $labels.destination_service }}.{{ $labels.destination_namespace }} answers in "
          "{{ $value | humanizeDuration }} at p99",
          "p99 latency over 1 s for 10 minutes, measured by the callers' sidecars (retries "
          "included).", "10m"),
    alert("MeshletProxyRejectingConfig",
          'sum by (namespace, workload, pod) '
          '(increase(meshlet_xds_client_updates_total{result="nack"}[10m])) > 0', "warning",
          "{{ $labels.namespace }}/{{ $labels.pod }} refused configuration from the control plane",
          "The sidecar NACKed an xDS update and runs on its previous configuration. "
          "meshctl proxy-status names the type and the reason.", "1m"),
    alert("MeshletControlPlaneSeesNacks",
          "sum by (job, instance, type) (increase(meshlet_xds_nacks_total[10m])) > 0", "warning",
          "Sidecars refuse {{ $labels.type }} from {{ $labels.instance }}",
          "The control plane's pushes were NACKed in the last 10 minutes.", "1m"),
    alert("MeshletProxyConfigStale",
          "meshlet_xds_client_connected == 0", "warning",
          "{{ $labels.namespace }}/{{ $labels.pod }} has no discovery stream",
          "The sidecar serves with the last configuration it had and gets no updates "
          "(policy, endpoints, certificates' trust).", "5m"),
    alert("MeshletControlPlanePushTimeouts",
          "sum by (job, instance) (increase(meshlet_xds_push_timeouts_total[10m])) > 0",
          "warning", "Pushes from {{ $labels.instance }} go unanswered",
          "Sidecars did not answer pushes within the timeout: their configuration may be "
          "stale.", "5m"),
    alert("MeshletControlPlaneDown",
          'absent(up{job="meshlet-control-plane"} == 1)', "critical",
          "No meshlet control plane is up",
          "Sidecars keep serving with their last configuration, but get no policy, endpoint "
          "or certificate updates; new pods cannot start their sidecars.", "2m"),
    alert("MeshletControlPlaneReplicaDown",
          'up{job="meshlet-control-plane"} == 0', "warning",
          "Control-plane replica {{ $labels.instance }} is down",
          "Its sidecars reconnect to the other replicas; with one replica left there is no "
          "headroom.", "5m"),
    alert("MeshletControlPlaneStoreFailing",
          "sum by (job, instance) (rate(meshlet_cp_api_store_errors_total[5m])) > 0\n"
          'or sum by (job, instance) (rate(meshlet_cp_policy_reloads_total{result="failed"}[5m]))'
          " > 0\n"
          'or sum by (job, instance) (rate(meshlet_cp_store_jobs_total{result="rejected"}[5m]))'
          " > 0", "critical",
          "{{ $labels.instance }} cannot use its store",
          "API calls fail in the store (500/503), store calls are refused, or loading policy "
          "from it fails: with etcd, the control plane is losing etcd.", "2m"),
    alert("MeshletControlPlaneStoreDown",
          "meshlet_cp_store_up == 0", "critical",
          "{{ $labels.instance }} has lost its store",
          "etcd has not answered the replica's calls (UNAVAILABLE, no quorum) or not for 30 s: "
          "policy writes fail and changes made through other replicas do not reach it.", "1m"),
    alert("MeshletControlPlaneStoreSlow",
          "histogram_quantile(0.99, sum by (job, instance, le) "
          "(rate(meshlet_cp_store_job_seconds_bucket[5m]))) > 0.5", "warning",
          "Store calls of {{ $labels.instance }} take {{ $value | humanizeDuration }} at p99",
          "fsyncs or etcd round trips are slow for 10 minutes.", "10m"),
    alert("MeshletWorkloadCertificateExpiring",
          "meshlet_workload_certificate_expiry_seconds < 6 * 3600", "warning",
          "The workload certificate of {{ $labels.namespace }}/{{ $labels.pod }} expires in "
          "{{ $value | humanizeDuration }}",
          "Certificates are renewed at half their lifetime (12 h of the default 24 h): "
          "renewals have failed for hours.", "5m"),
    alert("MeshletServingCertificateExpiring",
          "meshlet_cp_serving_certificate_expiry_timestamp_seconds - time() < 6 * 3600",
          "warning",
          "The discovery port's certificate of {{ $labels.instance }} expires in "
          "{{ $value | humanizeDuration }}",
          "The control plane renews it at half its lifetime; renewals have failed.", "5m"),
    alert("MeshletWorkloadCertificateNotRenewed",
          "(time() - meshlet_workload_certificate_not_before_timestamp_seconds)"
          " / (meshlet_workload_certificate_not_after_timestamp_seconds"
          " - meshlet_workload_certificate_not_before_timestamp_seconds) > 0.6", "warning",
          "The workload certificate of {{ $labels.namespace }}/{{ $labels.pod }} is past its "
          "renewal time ({{ $value | humanizePercentage }} of its lifetime used)",
          "Sidecars renew at half the lifetime, give or take a tenth: this one's renewals fail "
          "long before the certificate expires.", "10m"),
    alert("MeshletCaCertificateExpiring",
          "meshlet_cp_ca_certificate_expiry_timestamp_seconds - time() < 30 * 86400", "warning",
          "The CA's {{ $labels.role }} certificate {{ $labels.subject }} expires in "
          "{{ $value | humanizeDuration }}",
          "A root or the signing certificate ends within 30 days: rotate it (certs/README.md) "
          "before workloads can no longer get certificates that verify.", "5m"),
    alert("MeshletCaMaterialRefused",
          'increase(meshlet_cp_ca_reload_total{result=~"invalid|unreadable"}[15m]) > 0',
          "warning",
          "{{ $labels.instance }} refused new CA material ({{ $labels.result }})",
          "The Secret or files given as the CA's material changed to something the control plane "
          "will not sign with; the previous material stays in use. `meshctl ca status` says why.",
          "0m"),
    alert("MeshletSidecarShedding",
          "sum by (namespace, workload, pod, reason) "
          "(rate(meshlet_http_downstream_rq_overload_shed_total[5m])) > 0", "warning",
          "{{ $labels.namespace }}/{{ $labels.pod }} sheds requests ({{ $labels.reason }})",
          "The sidecar answers 503 (flag OL) to new requests: too many in flight or its memory "
          "over --overload-max-rss-mb.", "2m"),
    alert("MeshletFileDescriptorsNearLimit",
          'max by (job, namespace, workload, pod, instance) (process_open_fds{job=~"meshlet-.*"}'
          ' / process_max_fds{job=~"meshlet-.*"}) > 0.9', "warning",
          "{{ $labels.instance }} ({{ $labels.job }}{{ if $labels.pod }} {{ $labels.namespace }}/"
          "{{ $labels.pod }}{{ end }}) uses {{ $value | humanizePercentage }} of its file "
          "descriptors",
          "At the limit a sidecar cannot accept or open connections and a control plane cannot "
          "take discovery streams.", "5m"),
    alert("MeshletCircuitBreakerOpen",
          "max by (namespace, workload, pod, cluster) (meshlet_upstream_cf_breaker_state) == 1",
          "warning",
          "{{ $labels.namespace }}/{{ $labels.pod }} stopped calling {{ $labels.cluster }}",
          "The consecutive-failure breaker is open: requests to the cluster are answered 503 "
          "(flag BO) without being sent.", "1m"),
]

GROUPS = {"groups": [
    {"name": "meshlet-golden-signals", "rules": RECORDING},
    {"name": "meshlet-alerts", "rules": ALERTS},
]}

# --- Dashboards ------------------------------------------------------------------------------

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


class Dashboard:
    def __init__(self, uid, title, description, variables):
        self.uid, self.title, self.description = uid, title, description
        self.variables = variables
        self.panels, self.x, self.y, self.row_height = [], 0, 0, 0

    def row(self, title):
        self.next_line()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}})
        self.y += 1

    def next_line(self):
        if self.x:
            self.x, self.y = 0, self.y + self.row_height

    def panel(self, kind, title, targets, unit="short", width=8, height=8, description="",
              **extra):
        if self.x + width > 24:
            self.next_line()
        targets = [dict({"refId": chr(ord("A") + i), "datasource": DATASOURCE}, **t)
                   for i, t in enumerate(targets)]
        panel = {"type": kind, "title": title, "description": description,
                 "datasource": DATASOURCE, "targets": targets,
                 "gridPos": {"x": self.x, "y": self.y, "w": width, "h": height},
                 "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}}
        panel.update(extra)
        self.panels.append(panel)
        self.x += width
        self.row_height = height

    def graph(self, title, *targets, **kwargs):
        self.panel("timeseries", title, [{"expr": e, "legendFormat": l} for e, l in targets],
                   options={"legend": {"displayMode": "table", "placement": "bottom",
                                       "calcs": ["mean", "max", "lastNotNull"]},
                            "tooltip": {"mode": "multi", "sort": "desc"}}, **kwargs)

    def stat(self, title, expr, unit="short", **kwargs):
        self.panel("stat", title, [{"expr": expr, "instant": True}], unit=unit, width=4,
                   height=4, options={"reduceOptions": {"calcs": ["lastNotNull"]},
                                      "colorMode": "value", "graphMode": "area"}, **kwargs)

    def table(self, title, expr, unit="short", **kwargs):
        self.panel("table", title, [{"expr": expr, "instant": True, "format": "table"}],
                   unit=unit, transformations=[{"id": "organize", "options": {
                       "excludeByName": {"Time": True}}}], **kwargs)

    def json(self):
        for i, panel in enumerate(self.panels, 1):
            panel["id"] = i
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["meshlet"], "schemaVersion": 39, "version": 1, "editable": True,
            "graphTooltip": 1, "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
            "timezone": "", "annotations": {"list": []},
            "links": [{"type": "dashboards", "tags": ["meshlet"], "asDropdown": True,
                       "title": "meshlet", "includeVars": True, "keepTime": True}],
            "templating": {"list": [{
                "type": "datasource", "name": "datasource", "label": "Data source",
                "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
                "includeAll": False, "multi": False}] + self.variables},
            "panels": self.panels,
        }


def variable(name, query, label=None, multi=False):
    return {"type": "query", "name": name, "label": label or name.capitalize(),
            "datasource": DATASOURCE, "definition": query,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2, "sort": 1, "hide": 0, "current": {},
            "multi": multi, "includeAll": multi, **({"allValue": ".*"} if multi else {})}


R = WINDOW  # recording rules' suffix
NS = 'destination_namespace=~"$namespace"'


def mesh():
    d = Dashboard("meshlet-mesh", "meshlet / Mesh",
                  "Every service's golden signals as its callers' sidecars measure them.",
                  [variable("namespace", f"label_values(meshlet:service_requests:rate{R}, "
                                         "destination_namespace)", multi=True)])
    d.row("Mesh")
    d.stat("Requests per second", f"sum(meshlet:service_requests:rate{R}{{{NS}}})", "reqps")
    d.stat("Success rate",
           f'1 - ((sum(meshlet:edge_requests:rate{R}{{outcome="failure", {NS}}}) or vector(0))'
           f" / sum(meshlet:service_requests:rate{R}{{{NS}}}))", "percentunit")
    d.stat("Services with traffic", f"count(meshlet:service_requests:rate{R}{{{NS}}} > 0)")
    d.stat("Services under 99 %", f"count(meshlet:service_success_ratio:rate{R}{{{NS}}} < 0.99)"
           " or vector(0)")
    d.stat("Connected proxies", 'sum(meshlet_xds_connected_proxies{job="meshlet-control-plane"})')
    d.stat("Alerts firing", 'count(ALERTS{alertname=~"Meshlet.*", alertstate="firing"}) '
           "or vector(0)")
    d.row("Per service")
    svc = "{{destination_service}}.{{destination_namespace}}"
    d.graph("Requests per second",
            (f"sum by ({SERVICE}) (meshlet:service_requests:rate{R}{{{NS}}})", svc),
            unit="reqps", width=12)
    d.graph("Success rate", (f"meshlet:service_success_ratio:rate{R}{{{NS}}}", svc),
            unit="percentunit", width=12)
    for q in ("0.5", "0.95", "0.99"):
        d.graph(f"p{float(q) * 100:g} latency",
                (f'meshlet:service_request_duration_seconds:quantile{R}{{quantile="{q}", {NS}}}',
                 svc), unit="s")
    d.row("Edges")
    d.table("Top failing edges (failed requests per second)",
            f"topk(15, sum by ({EDGE}) "
            f'(meshlet:edge_requests:rate{R}{{outcome="failure", {NS}}}) > 0)',
            unit="reqps", width=12, height=10)
    d.table("Busiest edges (requests per second)",
            f"topk(15, sum by ({EDGE}) (meshlet:edge_requests:rate{R}{{{NS}}}))",
            unit="reqps", width=12, height=10)
    return d


def rate_sum(metric, selector, by=None):
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(rate({metric}{{{selector}}}[$__rate_interval]))"


def percentiles(buckets, selector):
    """(expr, legend) of the p50 and p99 of a histogram's `buckets` summed over `selector`."""
    return [(f"histogram_quantile({q}, sum by (le) (rate({buckets}{{{selector}}}"
             "[$__rate_interval])))", f"p{p}") for q, p in (("0.5", "50"), ("0.99", "99"))]


def edge_panels(d, selector, by, legend, peer):
    """The golden signals of the edges `selector` picks, one series per `peer` (grouped `by`)."""
    def edges(record):
        return f"sum by ({by}) (meshlet:edge_{record}:rate{R}{{{selector}}})"
    d.graph(f"Requests per second by {peer}", (edges("requests"), legend), unit="reqps")
    d.graph(f"Success rate by {peer}",
            (f"meshlet:edge_success_ratio:rate{R}{{{selector}}}", legend), unit="percentunit")
    d.graph(f"p99 latency by {peer}",
            (f'meshlet:edge_request_duration_seconds:quantile{R}{{quantile="0.99", {selector}}}',
             legend), unit="s")
    d.graph(f"Bytes per second by {peer}", (edges("tx_bytes"), legend + " requests"),
            (edges("rx_bytes"), legend + " responses"), unit="Bps")
    d.graph(f"Connections opened per second by {peer}", (edges("connections"), legend),
            unit="cps")


def service():
    d = Dashboard("meshlet-service", "meshlet / Service",
                  "One service: its callers and callees, latency, bytes, connections, and the "
                  "resilience of the calls to it.",
                  [variable("namespace", f"label_values(meshlet:service_requests:rate{R}, "
                                         "destination_namespace)"),
                   variable("service", f"label_values(meshlet:service_requests:rate{R}"
                                       '{destination_namespace="$namespace"}, '
                                       "destination_service)")])
    inbound = 'destination_service="$service", destination_namespace="$namespace"'
    outbound = 'workload="$service", namespace="$namespace"'
    d.row("Inbound: from its callers")
    edge_panels(d, inbound, "namespace, workload", "{{workload}}.{{namespace}}", "caller")
    d.graph("Latency",
            (f"meshlet:service_request_duration_seconds:quantile{R}{{{inbound}}}",
             "p{{quantile}}"), unit="s")
    d.row("Outbound: to its callees")
    edge_panels(d, outbound, SERVICE, "{{destination_service}}.{{destination_namespace}}",
                "callee")
    d.row("Route rules: the HTTPRoute and GRPCRoute rules that sent requests to it")
    rule = 'service="$service.$namespace"'
    legend = "{{route}} rule {{rule}}"
    d.graph("Requests per second by route rule",
            (f"sum by ({ROUTE}) (meshlet:route_requests:rate{R}{{{rule}}})", legend),
            unit="reqps", description="Callers' requests routed by each rule, after retries.")
    d.graph("Success rate by route rule",
            (f"meshlet:route_success_ratio:rate{R}{{{rule}}}", legend), unit="percentunit")
    d.graph("p99 latency by route rule",
            (f'meshlet:route_request_duration_seconds:quantile{R}{{quantile="0.99", {rule}}}',
             legend), unit="s")
    # The callers' clusters of this service (any port and subset): raw sidecar series.
    to = 'cluster=~"outbound[|][0-9]+[|][^|]*[|]$service[.]$namespace"'
    d.row("Resilience: the callers' view of calls to it")
    d.graph("Consecutive-failure breakers open (callers' workers)",
            (f"sum by (namespace, pod) (meshlet_upstream_cf_breaker_state{{{to}}} == 1)",
             "{{namespace}}/{{pod}}"),
            description="Workers whose breaker for the service is open (BO answers).")
    d.graph("Hosts ejected (outlier detection)",
            (f"sum by (namespace, pod) (meshlet_upstream_outlier_ejections_active{{{to}}})",
             "{{namespace}}/{{pod}}"))
    d.graph("Retries per second by reason",
            (rate_sum("meshlet_upstream_rq_retry_total", to, "reason"),
             "{{reason}}"), unit="reqps")
    d.graph("Requests refused locally per second",
            (rate_sum("meshlet_upstream_rq_breaker_open_total", to), "breaker open"),
            (rate_sum("meshlet_upstream_rq_no_healthy_host_total", to),
             "no healthy host"),
            (rate_sum("meshlet_upstream_rq_retry_skipped_total", to, "reason"),
             "retry not made: {{reason}}"), unit="reqps")
    d.graph("Responses by status class",
            (rate_sum("meshlet_upstream_rq_total", to, "code_class"),
             "{{code_class}}"), unit="reqps")
    d.graph("Circuit-breaker capacity left (lowest caller)",
            (f"min by (threshold) (meshlet_upstream_cb_remaining{{{to}}})", "{{threshold}}"))
    return d


def workload():
    pods = 'namespace="$namespace", workload="$workload", pod=~"$pod"'
    d = Dashboard("meshlet-workload", "meshlet / Workload",
                  "The pods of one workload: what they serve and call, and their sidecars.",
                  [variable("namespace", "label_values(meshlet_xds_client_connected, namespace)"),
                   variable("workload", 'label_values(meshlet_xds_client_connected'
                                        '{namespace="$namespace"}, workload)'),
                   variable("pod", 'label_values(meshlet_xds_client_connected'
                                   '{namespace="$namespace", workload="$workload"}, pod)',
                            multi=True)])
    rate = "$__rate_interval"
    inbound = f'{pods}, cluster=~"inbound[|].*"'
    outbound = f'{pods}, cluster=~"outbound[|].*"'
    count = "meshlet_upstream_rq_duration_seconds_count"
    d.row("Inbound: what each pod serves")
    d.graph("Requests per second", (f"sum by (pod) (rate({count}{{{inbound}}}[{rate}]))",
                                    "{{pod}}"), unit="reqps")
    d.graph("Success rate",
            (f'1 - (sum by (pod) (rate({count}{{outcome="failure", {inbound}}}[{rate}])) '
             f"/ sum by (pod) (rate({count}{{{inbound}}}[{rate}])) "
             f"or sum by (pod) (rate({count}{{{inbound}}}[{rate}])) * 0)", "{{pod}}"),
            unit="percentunit")
    d.graph("p99 latency",
            ("histogram_quantile(0.99, sum by (pod, le) "
             f"(rate(meshlet_upstream_rq_duration_seconds_bucket{{{inbound}}}[{rate}])))",
             "{{pod}}"), unit="s")
    d.graph("Responses sent by status class",
            (f"sum by (pod, code_class) (rate(meshlet_http_downstream_rq_total{{{pods}}}"
             f"[{rate}]))", "{{pod}} {{code_class}}"), unit="reqps")
    d.graph("Downstream connections open",
            (f"sum by (pod) (meshlet_downstream_cx_active{{{pods}}})", "{{pod}}"))
    d.graph("Requests shed (overload)",
            (f"sum by (pod, reason) (rate(meshlet_http_downstream_rq_overload_shed_total"
             f"{{{pods}}}[{rate}]))", "{{pod}} {{reason}}"), unit="reqps")
    d.row("Outbound: what each pod calls")
    d.graph("Requests per second by cluster",
            (f"sum by (pod, cluster) (rate({count}{{{outbound}}}[{rate}]))",
             "{{pod}} → {{cluster}}"), unit="reqps", width=12)
    d.graph("p99 latency by cluster",
            ("histogram_quantile(0.99, sum by (pod, cluster, le) "
             f"(rate(meshlet_upstream_rq_duration_seconds_bucket{{{outbound}}}[{rate}])))",
             "{{pod}} → {{cluster}}"), unit="s", width=12)
    d.graph("Upstream connections opened per second",
            (rate_sum("meshlet_upstream_cx_total", outbound, "pod"), "{{pod}}"),
            unit="cps")
    d.graph("Upstream requests in flight",
            (f"sum by (pod) (meshlet_upstream_rq_active{{{outbound}}})", "{{pod}}"))
    d.graph("Upstream TLS handshake failures",
            (f"sum by (pod) (rate(meshlet_upstream_cx_tls_handshake_fail_total{{{outbound}}}"
             f"[{rate}]))", "{{pod}}"), unit="cps")
    d.row("Sidecar process")
    proc = f'job="meshlet-sidecars", {pods}'
    proxy = 'namespace="$namespace", pod=~"$pod", container="meshlet-proxy"'
    d.graph("Memory",
            (f"sum by (pod) (process_resident_memory_bytes{{{proc}}})", "{{pod}} resident"),
            (f"sum by (pod) (container_memory_working_set_bytes{{{proxy}}})",
             "{{pod}} working set (kubelet)"),
            unit="bytes",
            description="The sidecar's resident memory (process_resident_memory_bytes, from its "
                        "own /proc); the kubelet's working set of the meshlet-proxy container "
                        "(cAdvisor, where scraped) is what a memory limit and evictions compare.")
    d.graph("CPU (cores)", (rate_sum("process_cpu_seconds_total", proc, "pod"), "{{pod}}"),
            unit="short")
    d.graph("File descriptors (share of the limit)",
            (f"max by (pod) (process_open_fds{{{proc}}} / process_max_fds{{{proc}}})",
             "{{pod}}"), unit="percentunit",
            description="Open descriptors (connections, listeners, files) over the soft "
                        "RLIMIT_NOFILE; at the limit the sidecar cannot accept connections.")
    d.graph("Uptime", (f"time() - max by (pod) (process_start_time_seconds{{{proc}}})",
                       "{{pod}}"), unit="s", description="A drop is a restart.")
    d.graph("Memory given back after configuration work",
            (rate_sum("meshlet_memory_released_bytes_total", pods, "pod"),
             "{{pod}}"), unit="Bps")
    d.row("Configuration (xDS) and identity")
    d.graph("Discovery stream connected", (f"meshlet_xds_client_connected{{{pods}}}", "{{pod}}"),
            description="0: the sidecar runs on its last configuration.")
    d.graph("xDS updates applied and refused",
            (rate_sum("meshlet_xds_client_updates_total", pods, "pod, result"),
             "{{pod}} {{result}}"), unit="ops")
    d.graph("xDS apply time (p99, by type)",
            ("histogram_quantile(0.99, sum by (pod, type, le) "
             f"(rate(meshlet_xds_client_apply_seconds_bucket{{{pods}}}[{rate}])))",
             "{{pod}} {{type}}"), unit="s")
    d.graph("Configuration snapshots applied by the workers",
            (rate_sum("meshlet_worker_config_updates_total", pods, "pod"),
             "{{pod}}"), unit="ops")
    d.graph("Time since the last update applied, by type",
            (f"time() - max by (pod, type) (meshlet_xds_client_last_update_timestamp_seconds"
             f"{{{pods}}} > 0)", "{{pod}} {{type}}"), unit="s",
            description="The control plane pushes only changes, so this grows while nothing "
                        "changes; a pod far behind the others of its workload for a type missed "
                        "updates.")
    d.table("Proxies", f"max by (pod, node, service, service_namespace, version) "
                       f"(meshlet_proxy_info{{{pods}}})",
            description="Each pod's sidecar as it names itself (meshlet_proxy_info): node id, "
                        "service, namespace, release.")
    d.graph("Resources kept after their removal",
            (f"sum by (pod, type) (meshlet_xds_client_retained_resources{{{pods}}})",
             "{{pod}} {{type}}"))
    d.graph("Workload certificate expires in",
            (f"meshlet_workload_certificate_expiry_seconds{{{pods}}}", "{{pod}}"), unit="s")
    return d


def control_plane():
    cp = 'job="meshlet-control-plane", instance=~"$instance"'
    rate = "$__rate_interval"
    d = Dashboard("meshlet-control-plane", "meshlet / Control plane",
                  "Configuration pushes, the API, the store, the CA and telemetry ingest.",
                  [variable("instance", 'label_values(meshlet_xds_connected_proxies'
                                        '{job="meshlet-control-plane"}, instance)', multi=True)])
    d.row("Overview")
    d.stat("Replicas up", f"sum(up{{{cp}}})")
    d.stat("Connected proxies", f"sum(meshlet_xds_connected_proxies{{{cp}}})")
    d.stat("Workloads disconnected",
           f'sum(meshlet_cp_registry_workloads{{state="disconnected", {cp}}})')
    d.stat("Push queue", f"sum(meshlet_xds_push_queue{{{cp}}})")
    d.stat("NACKs (1h)", f"sum(increase(meshlet_xds_nacks_total{{{cp}}}[1h]))")
    d.stat("Stores answering", f"sum(meshlet_cp_store_up{{{cp}}})",
           description="Replicas whose store (etcd, or the file store) answers.")
    d.stat("Live replicas", f"max(meshlet_cp_identity_limit_replicas{{{cp}}})",
           description="The replicas this one counts (itself included; 1 without etcd).")
    d.row("Configuration pushes (xDS)")
    d.graph("Pushes per second by type",
            (rate_sum("meshlet_xds_pushes_total", cp, "type"), "{{type}}"),
            unit="ops")
    d.graph("ACKs and NACKs per second",
            (rate_sum("meshlet_xds_acks_total", cp, "type"), "ACK {{type}}"),
            (rate_sum("meshlet_xds_nacks_total", cp, "type"), "NACK {{type}}"),
            unit="ops")
    d.graph("Convergence (change → every ACK)",
            *percentiles("meshlet_xds_convergence_seconds_bucket", cp), unit="s")
    d.graph("Connected proxies",
            (f"sum by (instance) (meshlet_xds_connected_proxies{{{cp}}})", "{{instance}}"))
    d.graph("Push problems per second",
            (rate_sum("meshlet_xds_push_timeouts_total", cp), "timeouts"),
            (rate_sum("meshlet_xds_generate_errors_total", cp), "generate errors"),
            (rate_sum("meshlet_cp_xds_stream_refusals_total", cp, "reason"),
             "stream refused: {{reason}}"), unit="ops")
    d.graph("Debounced change rounds per second",
            (rate_sum("meshlet_xds_push_rounds_total", cp), "rounds"), unit="ops")
    d.row("Process")
    d.graph("Memory (resident)",
            (f"sum by (instance) (process_resident_memory_bytes{{{cp}}})", "{{instance}}"),
            unit="bytes")
    d.graph("CPU (cores)", (rate_sum("process_cpu_seconds_total", cp, "instance"),
                            "{{instance}}"), unit="short")
    d.graph("File descriptors (share of the limit)",
            (f"max by (instance) (process_open_fds{{{cp}}} / process_max_fds{{{cp}}})",
             "{{instance}}"), unit="percentunit",
            description="Open descriptors (every proxy's discovery stream is one) over the soft "
                        "RLIMIT_NOFILE.")
    d.row("API")
    d.graph("Requests per second by status class",
            (rate_sum("meshlet_cp_api_requests_total", cp, "code_class"),
             "{{code_class}}"), unit="reqps")
    d.graph("p99 latency by operation",
            ("histogram_quantile(0.99, sum by (operation, le) "
             f"(rate(meshlet_cp_api_request_seconds_bucket{{{cp}}}[{rate}])))", "{{operation}}"),
            unit="s")
    d.graph("Writes and refusals per second",
            (rate_sum("meshlet_cp_api_writes_total", cp, "result"), "{{result}}"),
            (rate_sum("meshlet_cp_api_auth_failures_total", cp), "401"),
            (rate_sum("meshlet_cp_api_invalid_total", cp), "invalid"),
            (rate_sum("meshlet_cp_api_conflicts_total", cp), "conflict"),
            unit="reqps")
    d.row("Store (file or etcd)")
    d.graph("Store answering", (f"meshlet_cp_store_up{{{cp}}}", "{{instance}}"),
            description="0: etcd did not answer the last call, or none within 30 s.")
    d.graph("Store calls per second",
            (rate_sum("meshlet_cp_store_jobs_total", cp, "result"), "{{result}}"),
            (rate_sum("meshlet_cp_api_store_errors_total", cp), "API store errors"),
            unit="ops")
    d.graph("Store call time",
            *percentiles("meshlet_cp_store_job_seconds_bucket", cp), unit="s")
    d.graph("Store calls waiting; policy loads",
            (f"sum(meshlet_cp_store_jobs_pending{{{cp}}})", "pending"),
            (f"sum by (result) (increase(meshlet_cp_policy_reloads_total{{{cp}}}[{rate}]))",
             "policy loads {{result}}"))
    d.row("Certificate authority")
    d.graph("Certificates issued per second",
            (rate_sum("meshlet_ca_certificates_issued_total", cp, "attestation"),
             "{{attestation}}"), unit="ops")
    d.graph("Certificate requests refused per second",
            (rate_sum("meshlet_ca_requests_refused_total", cp, "reason"),
             "{{reason}}"), unit="ops")
    d.graph("Discovery port's certificate expires in",
            (f"meshlet_cp_serving_certificate_expiry_timestamp_seconds{{{cp}}} - time()",
             "{{instance}}"), unit="s")
    d.row("Telemetry ingest")
    d.graph("Golden-metrics reports per second",
            (rate_sum("meshlet_cp_golden_reports_total", cp, "result"),
             "{{result}}"),
            (rate_sum("meshlet_cp_metrics_report_refusals_total", cp, "reason"),
             "refused: {{reason}}"), unit="ops")
    d.graph("Golden-metrics series and history",
            (f"sum(meshlet_cp_golden_series{{{cp}}})", "series"),
            (f"sum(meshlet_cp_golden_history_series{{{cp}}})", "history edges"))
    d.graph("History memory",
            (f"sum by (instance) (meshlet_cp_golden_history_bytes{{{cp}}})", "{{instance}}"),
            unit="bytes")
    d.graph("Spans received per second",
            (f"sum by (receiver) (rate(meshlet_cp_telemetry_spans_received_total{{{cp}}}"
             f"[{rate}]))", "{{receiver}}"),
            (f"sum by (receiver) (rate(meshlet_cp_telemetry_spans_rejected_total{{{cp}}}"
             f"[{rate}]))", "rejected {{receiver}}"), unit="ops")
    d.graph("Trace store",
            (f"sum(meshlet_cp_telemetry_store_bytes{{{cp}}})", "bytes"), unit="bytes")
    d.graph("Registered workloads",
            (f"sum by (state) (meshlet_cp_registry_workloads{{{cp}}})", "{{state}}"))
    return d


DASHBOARDS = [mesh, service, workload, control_plane]

# --- Output ----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def dump_yaml(data):
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=True)


HEADER = ("# Generated by k8s/observability/generate.py: edit it, not this file "
          f"({DOCS}).\n")


def outputs():
    """{path relative to this directory: content} of every generated file."""
    rules = dump_yaml(GROUPS)
    files = {"rules.yaml": HEADER + rules}
    files["prometheus-rule.yaml"] = HEADER + dump_yaml({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "meshlet", "labels": {"app.kubernetes.io/part-of": "meshlet"}},
        "spec": GROUPS})
    for make in DASHBOARDS:
        d = make()
        files[f"dashboards/{d.uid}.json"] = json.dumps(d.json(), indent=2,
                                                       ensure_ascii=False) + "\n"
    return files


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for path, content in outputs().items():
        full = os.path.join(HERE, path)
        try:
            with open(full, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current == content:
            continue
        stale.append(path)
        if not check:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w", encoding="utf-8") as f:
                f.write(content)
    if check and stale:
        print("out of date (run python3 k8s/observability/generate.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
