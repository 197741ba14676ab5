"""The files of k8s/observability on their own (docs/observability.md): generated from
generate.py and up to date; the rules pass `promtool check rules`, the PrometheusRule holds the
same groups, and `promtool test rules` makes every alert fire and stay quiet; the dashboards are
valid Grafana JSON that query only through the `${datasource}` variable; the kustomization
renders them as ConfigMaps for Grafana's sidecar. //tests/integration:observability_test checks
the metric names against the real expositions.

Usage: files_test.py GENERATE_PY [unittest args]
"""

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

import yaml

import queries

HERE = None  # k8s/observability, from argv
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# One sidecar's series: frontend-0 of workload frontend calling reviews.default.
SIDECAR = 'job="meshlet-sidecars", namespace="default", workload="frontend", pod="frontend-0"'
CLUSTER = 'cluster="outbound|9080||reviews.default"'
CP = 'job="meshlet-control-plane", instance="cp-0:15014"'


def requests(success_per_min, failure_per_min, le_fast="0.1", slow=False):
    """Series of frontend-0's requests to reviews over 15 minutes at these rates per minute:
    counts by outcome and a histogram whose requests all take under `le_fast` seconds (or, with
    `slow`, between 2.5 and 5 s)."""
    out = []
    for outcome, per_min in (("success", success_per_min), ("failure", failure_per_min)):
        if per_min is None:
            continue
        labels = f"{SIDECAR}, {CLUSTER}, outcome=\"{outcome}\""
        out.append({"series": f"meshlet_upstream_rq_duration_seconds_count{{{labels}}}",
                    "values": f"0+{per_min}x15"})
        for le in ("0.1", "1", "2.5", "5", "+Inf"):
            below = (float(le) >= 5 if slow else float(le) >= float(le_fast))
            out.append({"series": f'meshlet_upstream_rq_duration_seconds_bucket{{{labels}, '
                                  f'le="{le}"}}',
                        "values": f"0+{per_min if below else 0}x15"})
    return out


def alerts(name, fired):
    """exp_alerts of `name`: [] or the given [(labels, summary)]."""
    return {"alertname": name, "exp_alerts": [
        {"exp_labels": labels, "exp_annotations": {"summary": summary}}
        for labels, summary in fired]}


REVIEWS = {"destination_service": "reviews", "destination_namespace": "default"}
POD = {"job": "meshlet-sidecars", "namespace": "default", "workload": "frontend",
       "pod": "frontend-0"}

# (what, input series, eval time, [alert expectations]); every alert of the rules needs a case
# where it fires and one where it does not.
CASES = [
    ("1 % of 60 requests a minute fail: the 99 % objective holds", requests(594, 6), "10m",
     [alerts("MeshletServiceSuccessRateLow", []),
      alerts("MeshletServiceSuccessRateCritical", [])]),
    ("5 % fail: under the objective, not critical", requests(570, 30), "10m",
     [alerts("MeshletServiceSuccessRateLow", [(
         dict(REVIEWS, severity="warning"),
         "reviews.default succeeds on 95% of its requests")]),
      alerts("MeshletServiceSuccessRateCritical", [])]),
    ("20 % fail: critical too", requests(480, 120), "10m",
     [alerts("MeshletServiceSuccessRateLow", [(
         dict(REVIEWS, severity="warning"), "reviews.default succeeds on 80% of its requests")]),
      alerts("MeshletServiceSuccessRateCritical", [(
          dict(REVIEWS, severity="critical"),
          "reviews.default succeeds on 80% of its requests")])]),
    ("every request fails (no success series): critical", requests(None, 60), "10m",
     [alerts("MeshletServiceSuccessRateCritical", [(
         dict(REVIEWS, severity="critical"), "reviews.default succeeds on 0% of its requests")])]),
    ("too little traffic to judge (3 failures a minute, all of it)", requests(None, 3), "10m",
     [alerts("MeshletServiceSuccessRateLow", []),
      alerts("MeshletServiceSuccessRateCritical", [])]),
    ("slow answers: p99 over 1 s for 10 minutes", requests(600, 0, slow=True), "14m",
     [alerts("MeshletServiceLatencyHigh", [(
         dict(REVIEWS, severity="warning", quantile="0.99"),
         "reviews.default answers in 4.975s at p99")])]),
    ("fast answers", requests(600, None), "14m", [alerts("MeshletServiceLatencyHigh", [])]),
    ("a sidecar NACKs", [{"series": f'meshlet_xds_client_updates_total{{{SIDECAR}, '
                                    'result="nack"}', "values": "0 0 1 1 1 1"}], "4m",
     [alerts("MeshletProxyRejectingConfig", [(
         dict(POD, severity="warning", job=None),
         "default/frontend-0 refused configuration from the control plane")])]),
    ("no NACK", [{"series": f'meshlet_xds_client_updates_total{{{SIDECAR}, result="nack"}}',
                  "values": "0x5"}], "4m", [alerts("MeshletProxyRejectingConfig", [])]),
    ("the control plane sees NACKs", [{"series": f'meshlet_xds_nacks_total{{{CP}, '
                                                 'type="clusters"}', "values": "0 1 1 1"}], "3m",
     [alerts("MeshletControlPlaneSeesNacks", [(
         {"job": "meshlet-control-plane", "instance": "cp-0:15014", "type": "clusters",
          "severity": "warning"}, "Sidecars refuse clusters from cp-0:15014")])]),
    ("the control plane sees no NACK", [{"series": f'meshlet_xds_nacks_total{{{CP}, '
                                                   'type="clusters"}', "values": "0x3"}], "3m",
     [alerts("MeshletControlPlaneSeesNacks", [])]),
    ("a sidecar without its discovery stream",
     [{"series": f"meshlet_xds_client_connected{{{SIDECAR}}}", "values": "0x10"}], "6m",
     [alerts("MeshletProxyConfigStale", [(
         dict(POD, severity="warning"), "default/frontend-0 has no discovery stream")])]),
    ("a connected sidecar",
     [{"series": f"meshlet_xds_client_connected{{{SIDECAR}}}", "values": "1x10"}], "6m",
     [alerts("MeshletProxyConfigStale", [])]),
    ("pushes unanswered", [{"series": f"meshlet_xds_push_timeouts_total{{{CP}}}",
                            "values": "0+1x10"}], "8m",
     [alerts("MeshletControlPlanePushTimeouts", [(
         {"job": "meshlet-control-plane", "instance": "cp-0:15014", "severity": "warning"},
         "Pushes from cp-0:15014 go unanswered")])]),
    ("pushes answered", [{"series": f"meshlet_xds_push_timeouts_total{{{CP}}}",
                          "values": "0x10"}], "8m",
     [alerts("MeshletControlPlanePushTimeouts", [])]),
    ("the control plane's target is down", [{"series": f"up{{{CP}}}", "values": "0x5"}], "3m",
     [alerts("MeshletControlPlaneDown", [({"severity": "critical"},
                                         "No meshlet control plane is up")])]),
    ("no control plane target at all", [{"series": f"up{{{SIDECAR}}}", "values": "1x5"}], "3m",
     [alerts("MeshletControlPlaneDown", [({"severity": "critical"},
                                         "No meshlet control plane is up")])]),
    ("one of two replicas up", [{"series": f"up{{{CP}}}", "values": "1x5"},
                                {"series": 'up{job="meshlet-control-plane", instance="cp-1"}',
                                 "values": "0x5"}], "3m",
     [alerts("MeshletControlPlaneDown", [])]),
    ("one of two replicas down for 5 minutes", [
        {"series": f"up{{{CP}}}", "values": "1x10"},
        {"series": 'up{job="meshlet-control-plane", instance="cp-1:15014"}', "values": "0x10"}],
     "6m", [alerts("MeshletControlPlaneReplicaDown", [(
         {"job": "meshlet-control-plane", "instance": "cp-1:15014", "severity": "warning"},
         "Control-plane replica cp-1:15014 is down")])]),
    ("a sidecar at 95 % of its descriptors for 5 minutes",
     [{"series": f'process_open_fds{{{SIDECAR}, instance="10.0.0.7:15020"}}',
       "values": "950x10"},
      {"series": f'process_max_fds{{{SIDECAR}, instance="10.0.0.7:15020"}}',
       "values": "1000x10"}], "6m",
     [alerts("MeshletFileDescriptorsNearLimit", [(
         dict(POD, instance="10.0.0.7:15020", severity="warning"),
         "10.0.0.7:15020 (meshlet-sidecars default/frontend-0) uses 95% of its file "
         "descriptors")])]),
    ("a control plane at half its descriptors",
     [{"series": f"process_open_fds{{{CP}}}", "values": "512x10"},
      {"series": f"process_max_fds{{{CP}}}", "values": "1024x10"}], "6m",
     [alerts("MeshletFileDescriptorsNearLimit", [])]),
    ("a replica's etcd unanswering for 2 minutes",
     [{"series": f"meshlet_cp_store_up{{{CP}}}", "values": "1 0 0 0 0"}], "3m",
     [alerts("MeshletControlPlaneStoreDown", [(
         {"job": "meshlet-control-plane", "instance": "cp-0:15014", "severity": "critical"},
         "cp-0:15014 has lost its store")])]),
    ("a replica's store answering", [{"series": f"meshlet_cp_store_up{{{CP}}}", "values": "1x5"}],
     "3m", [alerts("MeshletControlPlaneStoreDown", [])]),
    ("a replica down for a minute (a restart)", [
        {"series": f"up{{{CP}}}", "values": "1 0 0 1 1 1 1 1"}], "3m",
     [alerts("MeshletControlPlaneReplicaDown", [])]),
    ("store calls fail (etcd lost)",
     [{"series": f"meshlet_cp_api_store_errors_total{{{CP}}}", "values": "0+2x10"},
      {"series": f'meshlet_cp_policy_reloads_total{{{CP}, result="failed"}}',
       "values": "0x10"}], "6m",
     [alerts("MeshletControlPlaneStoreFailing", [(
         {"job": "meshlet-control-plane", "instance": "cp-0:15014", "severity": "critical"},
         "cp-0:15014 cannot use its store")])]),
    ("policy cannot be loaded from the store",
     [{"series": f'meshlet_cp_policy_reloads_total{{{CP}, result="failed"}}',
       "values": "0+1x10"}], "6m",
     [alerts("MeshletControlPlaneStoreFailing", [(
         {"job": "meshlet-control-plane", "instance": "cp-0:15014", "severity": "critical"},
         "cp-0:15014 cannot use its store")])]),
    ("the store works",
     [{"series": f"meshlet_cp_api_store_errors_total{{{CP}}}", "values": "3x10"},
      {"series": f'meshlet_cp_store_jobs_total{{{CP}, result="rejected"}}', "values": "0x10"},
      {"series": f'meshlet_cp_store_jobs_total{{{CP}, result="done"}}', "values": "0+50x10"}],
     "6m", [alerts("MeshletControlPlaneStoreFailing", [])]),
    ("store calls take 2 s",
     [{"series": f'meshlet_cp_store_job_seconds_bucket{{{CP}, le="{le}"}}',
       "values": f"0+{n}x20"} for le, n in (("0.1", 0), ("1", 0), ("5", 10), ("+Inf", 10))],
     "16m",
     [alerts("MeshletControlPlaneStoreSlow", [(
         {"job": "meshlet-control-plane", "instance": "cp-0:15014", "severity": "warning"},
         "Store calls of cp-0:15014 take 4.96s at p99")])]),
    ("store calls are fast",
     [{"series": f'meshlet_cp_store_job_seconds_bucket{{{CP}, le="{le}"}}',
       "values": f"0+{n}x20"} for le, n in (("0.1", 10), ("1", 10), ("5", 10), ("+Inf", 10))],
     "16m", [alerts("MeshletControlPlaneStoreSlow", [])]),
    ("a workload certificate 3 hours from expiry",
     [{"series": f"meshlet_workload_certificate_expiry_seconds{{{SIDECAR}}}",
       "values": "10800-60x10"}], "6m",
     [alerts("MeshletWorkloadCertificateExpiring", [(
         dict(POD, severity="warning"),
         "The workload certificate of default/frontend-0 expires in 2h 54m 0s")])]),
    ("a renewed workload certificate",
     [{"series": f"meshlet_workload_certificate_expiry_seconds{{{SIDECAR}}}",
       "values": "80000-60x10"}], "6m",
     [alerts("MeshletWorkloadCertificateExpiring", [])]),
    ("the discovery port's certificate 2 hours from expiry",
     [{"series": f"meshlet_cp_serving_certificate_expiry_timestamp_seconds{{{CP}}}",
       "values": "7200x10"}], "6m",
     [alerts("MeshletServingCertificateExpiring", [(
         {"job": "meshlet-control-plane", "instance": "cp-0:15014", "severity": "warning"},
         "The discovery port's certificate of cp-0:15014 expires in 1h 54m 0s")])]),
    ("a renewed discovery port certificate",
     [{"series": f"meshlet_cp_serving_certificate_expiry_timestamp_seconds{{{CP}}}",
       "values": "86400x10"}], "6m", [alerts("MeshletServingCertificateExpiring", [])]),
    ("a workload certificate past its renewal time",
     [{"series": f"meshlet_workload_certificate_not_before_timestamp_seconds{{{SIDECAR}}}",
       "values": "0x40"},
      {"series": f"meshlet_workload_certificate_not_after_timestamp_seconds{{{SIDECAR}}}",
       "values": "2000x40"}], "31m",
     [alerts("MeshletWorkloadCertificateNotRenewed", [(
         dict(POD, severity="warning"),
         "The workload certificate of default/frontend-0 is past its renewal time (93% of its "
         "lifetime used)")])]),
    ("a workload certificate renewed in time",
     [{"series": f"meshlet_workload_certificate_not_before_timestamp_seconds{{{SIDECAR}}}",
       "values": "0x40"},
      {"series": f"meshlet_workload_certificate_not_after_timestamp_seconds{{{SIDECAR}}}",
       "values": "86400x40"}], "31m", [alerts("MeshletWorkloadCertificateNotRenewed", [])]),
    ("the CA's signing certificate 20 days from expiry",
     [{"series": f'meshlet_cp_ca_certificate_expiry_timestamp_seconds{{{CP}, role="signing", '
                 'subject="CN=meshlet CA"}', "values": "1728000x10"}], "6m",
     [alerts("MeshletCaCertificateExpiring", [(
         {"job": "meshlet-control-plane", "instance": "cp-0:15014", "severity": "warning",
          "role": "signing", "subject": "CN=meshlet CA"},
         "The CA's signing certificate CN=meshlet CA expires in 19d 23h 54m 0s")])]),
    ("a CA certificate with a year left",
     [{"series": f'meshlet_cp_ca_certificate_expiry_timestamp_seconds{{{CP}, role="root", '
                 'subject="CN=root"}', "values": "31536000x10"}], "6m",
     [alerts("MeshletCaCertificateExpiring", [])]),
    ("new CA material refused",
     [{"series": f'meshlet_cp_ca_reload_total{{{CP}, result="invalid"}}',
       "values": "0 0 1 1 1 1"}], "4m",
     [alerts("MeshletCaMaterialRefused", [(
         {"job": "meshlet-control-plane", "instance": "cp-0:15014", "severity": "warning",
          "result": "invalid"},
         "cp-0:15014 refused new CA material (invalid)")])]),
    ("CA material taken",
     [{"series": f'meshlet_cp_ca_reload_total{{{CP}, result="ok"}}', "values": "0 0 1 1 1 1"},
      {"series": f'meshlet_cp_ca_reload_total{{{CP}, result="invalid"}}',
       "values": "0 0 0 0 0 0"}], "4m", [alerts("MeshletCaMaterialRefused", [])]),
    ("a sidecar sheds",
     [{"series": f'meshlet_http_downstream_rq_overload_shed_total{{{SIDECAR}, '
                  'reason="active_requests"}', "values": "0+5x10"}], "5m",
     [alerts("MeshletSidecarShedding", [(
         dict(POD, severity="warning", reason="active_requests", job=None),
         "default/frontend-0 sheds requests (active_requests)")])]),
    ("a sidecar that shed once, long ago",
     [{"series": f'meshlet_http_downstream_rq_overload_shed_total{{{SIDECAR}, '
                  'reason="memory"}', "values": "0 1 1 1 1 1 1 1 1 1 1"}], "10m",
     [alerts("MeshletSidecarShedding", [])]),
    ("a breaker open on one worker",
     [{"series": f'meshlet_upstream_cf_breaker_state{{{SIDECAR}, {CLUSTER}, worker="0"}}',
       "values": "1x5"},
      {"series": f'meshlet_upstream_cf_breaker_state{{{SIDECAR}, {CLUSTER}, worker="1"}}',
       "values": "0x5"}], "3m",
     [alerts("MeshletCircuitBreakerOpen", [(
         dict(POD, severity="warning", cluster="outbound|9080||reviews.default", job=None),
         "default/frontend-0 stopped calling outbound|9080||reviews.default")])]),
    ("a breaker half-open (probing)",
     [{"series": f'meshlet_upstream_cf_breaker_state{{{SIDECAR}, {CLUSTER}, worker="0"}}',
       "values": "2x5"}], "3m", [alerts("MeshletCircuitBreakerOpen", [])]),
]

# Recording rules: the golden signals of frontend → reviews at 600 requests a minute, 5 %
# failing, every one under 100 ms.
RECORDED = [
    {"expr": "meshlet:service_requests:rate2m",
     "exp_samples": [{"labels": 'meshlet:service_requests:rate2m{destination_namespace='
                                '"default", destination_service="reviews"}', "value": 10}]},
    {"expr": "meshlet:service_success_ratio:rate2m",
     "exp_samples": [{"labels": 'meshlet:service_success_ratio:rate2m{destination_namespace='
                                '"default", destination_service="reviews"}', "value": 0.95}]},
    {"expr": 'meshlet:edge_requests:rate2m{outcome="failure"}',
     "exp_samples": [{"labels": 'meshlet:edge_requests:rate2m{destination_namespace="default", '
                                'destination_service="reviews", namespace="default", '
                                'outcome="failure", workload="frontend"}', "value": 0.5}]},
    {"expr": 'meshlet:service_request_duration_seconds:quantile2m{quantile="0.99"}',
     "exp_samples": [{"labels": 'meshlet:service_request_duration_seconds:quantile2m{'
                                'destination_namespace="default", destination_service="reviews"'
                                ', quantile="0.99"}', "value": 0.099}]},
    {"expr": 'meshlet:edge_request_duration_seconds:quantile2m{quantile="0.5"}',
     "exp_samples": [{"labels": 'meshlet:edge_request_duration_seconds:quantile2m{'
                                'destination_namespace="default", destination_service="reviews"'
                                ', namespace="default", quantile="0.5", workload="frontend"}',
                      "value": 0.05}]},
    {"expr": "meshlet:edge_success_ratio:rate2m",
     "exp_samples": [{"labels": 'meshlet:edge_success_ratio:rate2m{destination_namespace='
                                '"default", destination_service="reviews", namespace='
                                '"default", workload="frontend"}', "value": 0.95}]},
]


def load_generator():
    spec = importlib.util.spec_from_file_location("generate", os.path.join(HERE, "generate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FilesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.rules_path = os.path.join(HERE, "rules.yaml")
        cls.rules = queries.load_rules(cls.rules_path)
        cls.dashboards = {name: queries.load_dashboard(os.path.join(HERE, "dashboards", name))
                          for name in sorted(os.listdir(os.path.join(HERE, "dashboards")))}

    def promtool(self, *args):
        r = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr

    def test_generated_files_are_up_to_date(self):
        for path, content in load_generator().outputs().items():
            with open(os.path.join(HERE, path), encoding="utf-8") as f:
                self.assertEqual(f.read(), content,
                                 f"{path}: run python3 k8s/observability/generate.py")

    def test_rules_pass_promtool_check(self):
        code, out = self.promtool("check", "rules", self.rules_path)
        self.assertEqual(code, 0, out)
        self.assertIn("SUCCESS", out)

    def test_prometheus_rule_holds_the_same_groups(self):
        with open(os.path.join(HERE, "prometheus-rule.yaml")) as f:
            rule = yaml.safe_load(f)
        self.assertEqual((rule["apiVersion"], rule["kind"]),
                         ("monitoring.coreos.com/v1", "PrometheusRule"))
        self.assertEqual(rule["spec"], self.rules)
        path = os.path.join(self.tmp, "spec.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(rule["spec"], f)
        code, out = self.promtool("check", "rules", path)
        self.assertEqual(code, 0, out)

    def test_alerts_have_severity_summary_and_runbook(self):
        with open(os.path.join(HERE, "..", "..", "docs", "observability.md")) as f:
            doc = f.read()
        anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                   for h in re.findall(r"^#+ (.+)$", doc, re.M)}
        for group in self.rules["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                self.assertIn(rule["labels"]["severity"], ("warning", "critical"), rule["alert"])
                self.assertTrue(rule["annotations"]["summary"], rule["alert"])
                self.assertTrue(rule["annotations"]["description"], rule["alert"])
                url = rule["annotations"]["runbook_url"]
                self.assertEqual(url, "docs/observability.md#" + rule["alert"].lower())
                self.assertIn(rule["alert"].lower(), anchors, "no section in the docs")

    def unit_tests(self, cases):
        """promtool test rules on `cases` (CASES' shape) plus the recording rules' checks."""
        tests = [{"name": "golden signals", "interval": "1m", "input_series": requests(570, 30),
                  "promql_expr_test": [dict(t, eval_time="10m") for t in RECORDED]}]
        descriptions = {r["alert"]: r["annotations"] for g in self.rules["groups"]
                        for r in g["rules"] if "alert" in r}
        for what, series, at, expected in cases:
            expected = copy.deepcopy(expected)
            for e in expected:
                for a in e["exp_alerts"]:
                    a["exp_labels"] = {k: v for k, v in a["exp_labels"].items() if v is not None}
                    a["exp_labels"]["alertname"] = e["alertname"]
                    annotations = descriptions[e["alertname"]]
                    a["exp_annotations"].update(description=annotations["description"],
                                                runbook_url=annotations["runbook_url"])
                e["eval_time"] = at
            tests.append({"name": what, "interval": "1m", "input_series": series,
                          "alert_rule_test": expected})
        path = os.path.join(self.tmp, "rules_test.yaml")
        with open(path, "w") as f:
            yaml.safe_dump({"rule_files": [self.rules_path], "evaluation_interval": "1m",
                            "tests": tests}, f, sort_keys=False)
        return self.promtool("test", "rules", path)

    def test_every_alert_fires_and_stays_quiet(self):
        code, out = self.unit_tests(CASES)
        self.assertEqual(code, 0, out)
        names = {r["alert"] for g in self.rules["groups"] for r in g["rules"] if "alert" in r}
        fired = {e["alertname"] for _, _, _, exp in CASES for e in exp if e["exp_alerts"]}
        quiet = {e["alertname"] for _, _, _, exp in CASES for e in exp if not e["exp_alerts"]}
        self.assertEqual(names - fired, set(), "alerts no case makes fire")
        self.assertEqual(names - quiet, set(), "alerts no case keeps quiet")

    def test_unit_tests_fail_on_a_wrong_expectation(self):
        # The harness itself: an alert expected to fire that does not is a failure.
        what, series, at, _ = CASES[0]
        code, out = self.unit_tests([(what, series, at, [alerts(
            "MeshletServiceSuccessRateLow", [(dict(REVIEWS, severity="warning"), "x")])])])
        self.assertNotEqual(code, 0, out)

    def test_dashboards_are_grafana_json_on_the_datasource_variable(self):
        self.assertEqual(sorted(self.dashboards), ["meshlet-control-plane.json",
                                                   "meshlet-mesh.json", "meshlet-service.json",
                                                   "meshlet-workload.json"])
        uids = set()
        for name, d in self.dashboards.items():
            with self.subTest(dashboard=name):
                self.assertEqual(d["uid"] + ".json", name)
                uids.add(d["uid"])
                self.assertGreaterEqual(d["schemaVersion"], 36)
                self.assertNotIn("__inputs", d)  # provisioned as is, not imported
                variables = d["templating"]["list"]
                self.assertEqual({k: variables[0][k] for k in ("type", "name", "query")},
                                 {"type": "datasource", "name": "datasource",
                                  "query": "prometheus"})
                # Every other datasource reference, wherever it is, is the variable.
                refs = []

                def walk(node, path):
                    if isinstance(node, dict):
                        for k, v in node.items():
                            if k == "datasource":
                                refs.append((path, v))
                            else:
                                walk(v, f"{path}.{k}")
                    elif isinstance(node, list):
                        for i, v in enumerate(node):
                            walk(v, f"{path}[{i}]")
                walk({k: v for k, v in d.items() if k != "templating"}, "")
                walk(variables[1:], "templating")
                self.assertTrue(refs)
                self.assertEqual([r for r in refs if r[1] != DATASOURCE], [])
                defined = {v["name"] for v in variables}
                for v in variables[1:]:
                    self.assertEqual(v["type"], "query")
                    self.assertTrue(v["query"]["query"].startswith("label_values("), v["name"])
                ids, panels = set(), []

                def collect(items):
                    for p in items:
                        panels.append(p)
                        collect(p.get("panels", []))
                collect(d["panels"])
                for p in panels:
                    self.assertNotIn(p["id"], ids)
                    ids.add(p["id"])
                    g = p["gridPos"]
                    self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
                    if p["type"] == "row":
                        continue
                    self.assertTrue(p["targets"], p["title"])
                    for t in p["targets"]:
                        used = set(re.findall(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)", t["expr"]))
                        self.assertEqual(used - defined - {"__rate_interval"}, set(),
                                         p["title"])
                        self.assertTrue(queries.metric_names(t["expr"]), t["expr"])
        self.assertEqual(len(uids), 4)

    def test_kustomization_renders_dashboards_for_grafanas_sidecar(self):
        # The source tree's directory: kustomize refuses files outside its root, and the
        # runfiles are links to them.
        root = os.path.dirname(os.path.realpath(os.path.join(HERE, "kustomization.yaml")))
        r = subprocess.run(["kubectl", "kustomize", root], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        objects = [o for o in yaml.safe_load_all(r.stdout) if o]
        maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
        self.assertEqual(sorted(maps), ["meshlet-dashboard-control-plane",
                                        "meshlet-dashboard-mesh", "meshlet-dashboard-service",
                                        "meshlet-dashboard-workload"])
        for name, cm in maps.items():
            self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
            (key, text), = cm["data"].items()
            self.assertEqual(json.loads(text), self.dashboards[key])
        (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
        self.assertEqual(rule["spec"], self.rules)
        monitors = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodMonitor"}
        self.assertEqual(sorted(monitors), ["meshlet-control-plane", "meshlet-sidecars"])
        for o in objects:
            self.assertEqual(o["metadata"]["namespace"], "meshlet-system", o["metadata"]["name"])


class QueriesTest(unittest.TestCase):
    """The metric-name reader the integration test relies on."""

    def test_names_among_functions_matchers_and_grouping(self):
        cases = {
            'sum by (a, b) (rate(x_total{c=~"d|e", f="$var"}[$__rate_interval]))': {"x_total"},
            "a / on (l) group_left (m) b or vector(0) > bool 1e-3": {"a", "b"},
            'histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) - time() < 6 * 3600':
                {"h_bucket"},
            'topk(15, sum without (outcome) (m:rule:rate2m{o="f"}) > 0)': {"m:rule:rate2m"},
            'absent(up{job="x"} == 1) unless {__name__="y"} offset 5m': {"up", "y"},
            'count(ALERTS{alertname=~"M.*"}) or max(z[5m:1m])': {"ALERTS", "z"},
            'label_replace(q, "d", "$1", "cluster", "(.+)[.]sum")': {"q"},
        }
        for expr, names in cases.items():
            self.assertEqual(queries.metric_names(expr), names, expr)

    def test_variable_queries(self):
        self.assertEqual(queries.variable_expr("label_values(m{a=\"$b\"}, pod)"), 'm{a="$b"}')
        self.assertIsNone(queries.variable_expr("label_values(namespace)"))

    def test_bad_expression_is_an_error(self):
        with self.assertRaises(queries.PromqlError):
            queries.metric_names("sum(x{a=\"b})")


if __name__ == "__main__":
    HERE = os.path.dirname(os.path.abspath(sys.argv[1]))
    unittest.main(argv=sys.argv[:1] + sys.argv[2:], verbosity=2)
