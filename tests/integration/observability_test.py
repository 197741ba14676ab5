"""The Grafana dashboards and Prometheus rules of k8s/observability against the real expositions
(docs/observability.md).

Usage: observability_test.py CONTROL_PLANE MESHCTL SIDECAR SERVICES RULES_YAML QUERIES_PY
       [unittest args]

A real control plane (plaintext xDS) and two sidecars configured over its xDS: frontend-0 (with
a workload certificate from the control plane's CA) calls reviews-0, in front of an app that
fails and is slow on demand, through an HTTPRoute rule (the route-rule series). A TrafficPolicy
gives reviews retries, a consecutive-failure breaker and outlier detection; frontend-0 sheds load beyond one request in flight and watches
its memory. Traffic then makes the lazily registered series the dashboards and rules read
appear (successes, failures, retries, an open breaker, an ejection, a shed request), a third
sidecar's join token is refused by the CA, and the expositions are scraped:

- every metric name a dashboard panel or a rule expression selects exists in one of them
  (histogram series as NAME_bucket/_sum/_count), or is the output of a recording rule, or is one
  of the few series Prometheus or the kubelet make (`up`, cAdvisor's container_*);
- both expositions pass `promtool check metrics`;
- Debian's Prometheus, scraping them with the labels scrape-config.yaml sets and evaluating
  rules.yaml, records the golden signals of frontend → reviews.default, and answers every
  dashboard query (its variables set) and rule expression without an error.

The static checks (promtool check rules / test rules, the dashboards' JSON) are in
//tests/observability:files_test; this test is the one that needs the binaries.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.error
import urllib.parse
import urllib.request

import control_upstream
import cp_api
import sidecar_test
from mesh_util import (call_service, create_join_token, meshctl, start_control_plane,
                       start_xds_sidecar, stop_all, write_meshctl_context)
from ports import free_port
from sidecar_test import wait_for

CONTROL_PLANE = MESHCTL = SERVICES = OBSERVABILITY = None  # set from argv

POLICY = """apiVersion: meshlet.io/v1
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  target: reviews
  retries: {attempts: 1, retryOn: [5xx], backoffBase: 1ms, backoffMax: 2ms}
  circuitBreaker: {consecutiveFailures: 3, openDuration: 60s}
  outlierDetection: {consecutive5xx: 2, baseEjectionTime: 60s, maxEjectionPercent: 100}
---
apiVersion: meshlet.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  target: reviews
  rules:
  - name: all
    backends:
    - service: reviews
"""


class ObservabilityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        data = os.path.join(cls.tmp, "cp-data")
        cls.sidecars, cls.apps = [], []
        cls.cp, cls.api, ads = start_control_plane(
            CONTROL_PLANE, os.path.join(cls.tmp, "cp.log"), "--data-dir", data,
            "--api-address", "127.0.0.1:0", "--xds-plaintext", "--xds-address", "127.0.0.1:0",
            "--xds-listen-host", "127.0.0.1")
        try:
            cls.start_mesh(data, ads)
        except BaseException:
            stop_all(cls.sidecars, cls.apps, cls.cp)
            raise

    @classmethod
    def start_mesh(cls, data, ads):
        context = write_meshctl_context(os.path.join(cls.tmp, "meshctl.yaml"), cls.api,
                                        os.path.join(data, "api-token"))
        with open(SERVICES) as f:
            meshctl(MESHCTL, context, "apply", "-f", "-", stdin=f.read() + "---\n" + POLICY)
        with open(os.path.join(data, "api-token")) as f:
            api_token = f.read().strip()
        cls.api_token, cls.context = api_token, context
        app = control_upstream.ControlUpstream(name="reviews")
        cls.apps.append(app)
        report = "metrics_report: {interval: 0.2s}\n"
        reviews = start_xds_sidecar(cls.tmp, ads, "reviews-0", "default",
                                    "--node-service=reviews", f"--node-port={app.port}",
                                    config=report)
        # frontend-0 has a workload certificate (the CA's and the certificate's series).
        frontend = start_xds_sidecar(
            cls.tmp, ads, "frontend-0", "default", "--node-service=frontend",
            "--overload-max-active-requests=1", "--overload-max-rss-mb=4096", config=report,
            join_token=create_join_token(cls.api, api_token, "frontend", "10m"),
            service_account="frontend")
        cls.sidecars += [reviews, frontend]
        # A join token the CA refuses (its refusal series): a sidecar that never gets a
        # certificate, stopped once the refusal is counted.
        token_file = os.path.join(cls.tmp, "bad-join-token")
        with open(token_file, "w") as f:
            f.write("not-a-token\n")
        with open(os.path.join(cls.tmp, "intruder.yaml"), "w") as f:
            f.write("{}\n")
        intruder = subprocess.Popen(
            [sidecar_test.SIDECAR, "--config", f.name, f"--admin-address=127.0.0.1:{free_port()}",
             f"--xds={ads}", "--xds-plaintext=true", "--node-id=intruder-0",
             "--node-namespace=default", "--node-service=intruder",
             "--node-service-account=intruder", f"--join-token-file={token_file}",
             f"--ca-address={ads}", "--ca-plaintext=true"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: "meshlet_ca_requests_refused_total" in cls.expositions()[
                "control-plane"], 10)
        finally:
            intruder.kill()
            intruder.wait()

        cls.start_prometheus(reviews, frontend)

        def call():
            return call_service(frontend.outbound, "reviews:9080", "/")[0]
        if not wait_for(lambda: call() == 200, 15):
            raise AssertionError(f"frontend-0 never reached reviews: {call()}")
        for _ in range(20):
            call()
        # Shed: a second request while a slow one is in flight.
        app.control(delay_ms=1000, delay_next=1)
        slow = threading.Thread(target=call)
        slow.start()
        wait_for(lambda: app.stats()["delayed"] == 1, 5)
        cls.shed_status = call()
        slow.join()
        # Failures: a 503 retried once, then failures in a row open the breaker and eject the
        # host.
        app.control(fail_next=1000, status=503)
        for _ in range(6):
            call()
        app.control(fail_next=0)

    @classmethod
    def start_prometheus(cls, *sidecars):
        """Debian's Prometheus scraping the sidecars (with the labels scrape-config.yaml gives
        them) and the control plane every second, evaluating rules.yaml every second."""
        workdir = os.path.join(cls.tmp, "prometheus")
        os.mkdir(workdir)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [os.path.join(OBSERVABILITY, "rules.yaml")],
            "scrape_configs": [
                {"job_name": "meshlet-sidecars", "metrics_path": "/stats/prometheus",
                 "static_configs": [
                     {"targets": [f"127.0.0.1:{s.admin_port}"],
                      "labels": {"namespace": "default", "pod": s.name,
                                 "workload": s.name.rsplit("-", 1)[0]}} for s in sidecars]},
                {"job_name": "meshlet-control-plane", "scheme": "https",
                 "tls_config": {"ca_file": cp_api.ca_file_for(cls.api),
                                "server_name": "meshlet-control-plane"},
                 "static_configs": [{"targets": [cls.api]}]}]}
        path = os.path.join(workdir, "prometheus.yml")
        with open(path, "w") as f:
            json.dump(config, f)  # JSON is YAML
        cls.prom_port = free_port()
        cls.prom_log = open(os.path.join(workdir, "prometheus.log"), "wb")
        cls.prom = subprocess.Popen(
            ["prometheus", f"--config.file={path}",
             f"--storage.tsdb.path={os.path.join(workdir, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{cls.prom_port}"],
            stdout=cls.prom_log, stderr=cls.prom_log)

    @classmethod
    def query(cls, promql):
        """(HTTP status, the answer's JSON) of an instant query."""
        url = (f"http://127.0.0.1:{cls.prom_port}/api/v1/query?" +
               urllib.parse.urlencode({"query": promql}))
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "prom", None) is not None:
            cls.prom.terminate()
            cls.prom.wait(timeout=10)
            cls.prom_log.close()
        stop_all(cls.sidecars, cls.apps, cls.cp)

    @classmethod
    def expositions(cls):
        """{where: exposition text} of the sidecars and the control plane."""
        found = {s.name: s.get("/stats/prometheus")[1] for s in cls.sidecars[:2]}
        with cp_api.urlopen(urllib.request.Request(cp_api.url(cls.api, "/metrics")),
                            timeout=5) as r:
            found["control-plane"] = r.read().decode()
        return found

    def queried(self):
        """[(file, where, PromQL)] of every dashboard and rule file."""
        out = []
        for name in sorted(os.listdir(os.path.join(OBSERVABILITY, "dashboards"))):
            dashboard = queries.load_dashboard(os.path.join(OBSERVABILITY, "dashboards", name))
            out += [(name, where, expr) for where, expr in queries.dashboard_queries(dashboard)]
        rules = queries.load_rules(os.path.join(OBSERVABILITY, "rules.yaml"))
        return out + [("rules.yaml", where, expr) for where, expr in queries.rule_queries(rules)]

    def missing(self, queried, exposed):
        """{metric name: [file and place]} of the names `queried` selects that exist nowhere."""
        known = exposed | EXTERNAL | queries.recorded_names(
            queries.load_rules(os.path.join(OBSERVABILITY, "rules.yaml")))
        missing = {}
        for name, where, expr in queried:
            for metric in queries.metric_names(expr) - known:
                missing.setdefault(metric, []).append(f"{name}: {where}")
        return missing

    def test_every_queried_metric_is_exposed(self):
        self.assertEqual(self.shed_status, 503)  # the shed series counted something
        exposed = set()
        for text in self.expositions().values():
            exposed |= queries.exposed_names(text)
        queried = self.queried()
        self.assertGreater(len(queried), 100)
        self.assertEqual(self.missing(queried, exposed), {})
        # The check itself: a name no binary exposes is reported, with where it is used.
        self.assertEqual(
            self.missing([("x.json", "panel 'p' A",
                           'sum(rate(meshlet_upstream_rq_durations_count{cluster="a"}[1m]))')],
                         exposed),
            {"meshlet_upstream_rq_durations_count": ["x.json: panel 'p' A"]})

    def test_prometheus_records_and_answers_every_query(self):
        """The rules loaded by a real Prometheus turn the scraped series into the golden
        signals of frontend → reviews.default; every dashboard query and rule expression, its
        variables set, is valid PromQL to it."""
        edge = ('{namespace="default", workload="frontend", destination_service="reviews", '
                'destination_namespace="default"')
        answers = {}

        def recorded():
            # A series is counted from its first scrape on: go on calling (the breaker is
            # open, so these fail at frontend-0) until the rates show it.
            call_service(self.sidecars[1].outbound, "reviews:9080", "/")
            try:
                answers["failed"] = self.query(
                    f'meshlet:edge_requests:rate2m{edge}, outcome="failure"}}')[1]["data"]
                answers["p99"] = self.query('meshlet:service_request_duration_seconds:quantile2m'
                                            '{destination_service="reviews", quantile="0.99"}'
                                            )[1]["data"]
            except (OSError, KeyError, ValueError):
                return False
            return all(a["result"] and float(a["result"][0]["value"][1]) > 0
                       for a in answers.values())
        with open(self.prom_log.name, "rb") as f:
            self.assertTrue(wait_for(recorded, 30), (answers, f.read()[-2000:]))
        variables = {"namespace": "default", "service": "reviews", "workload": "frontend",
                     "pod": "frontend-0", "instance": ".*", "__rate_interval": "1m"}
        bad = {}
        for name, where, expr in self.queried():
            text = re.sub(r"\$\{?([a-zA-Z_]+)\}?", lambda m: variables[m.group(1)], expr)
            status, answer = self.query(text)
            if status != 200 or answer.get("status") != "success":
                bad[f"{name}: {where}"] = answer.get("error")
        self.assertEqual(bad, {})
        # The service dashboard's route-rule panels find HTTPRoute default/reviews' rule.
        self.assertTrue(wait_for(lambda: self.query(
            'meshlet:route_requests:rate2m{service="reviews.default"}')[1]["data"]["result"], 30))
        status, answer = self.query(
            'sum by (route, rule, service) (meshlet:route_requests:rate2m'
            '{service="reviews.default"})')
        self.assertEqual([r["metric"] for r in answer["data"]["result"]],
                         [{"route": "HTTPRoute/default/reviews", "rule": "0",
                           "service": "reviews.default"}])
        # The service dashboard's inbound panels find the caller.
        status, answer = self.query(
            'sum by (namespace, workload) (meshlet:edge_requests:rate2m'
            '{destination_service="reviews", destination_namespace="default"})')
        self.assertEqual([r["metric"] for r in answer["data"]["result"]],
                         [{"namespace": "default", "workload": "frontend"}])

    def test_workload_certificates_are_reported(self):
        """frontend-0's certificate, as its sidecar holds it, is what GET /api/v1/certificates
        lists (from its golden-metrics reports) and what `meshctl check` counts: renewed in
        time, no warning (meshlet_workload_certificate_not_*_timestamp_seconds feed the
        renewal alert)."""
        leaf = json.loads(self.sidecars[1].get("/certs")[1])["workload_certificate"]["chain"][0]

        def listed():
            status, body = cp_api.request(self.api, "GET", "/api/v1/certificates",
                                          token=self.api_token)
            self.assertEqual(status, 200, body)
            return {i["node"]: i for i in json.loads(body)["items"]}.get("frontend-0")
        self.assertTrue(wait_for(lambda: listed() is not None, 10))
        item = listed()
        self.assertEqual((item["workload"], item["notBefore"], item["notAfter"]),
                         ("frontend-0", leaf["not_before"], leaf["not_after"]))
        check = meshctl(MESHCTL, self.context, "check")
        self.assertIn("certificates   1 workload certificates reported, 0 not renewed in time",
                      check)

    def test_expositions_pass_promtool(self):
        for where, text in self.expositions().items():
            check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                                   capture_output=True, timeout=30)
            self.assertEqual((check.returncode, (check.stdout + check.stderr).decode()), (0, ""),
                             where)


# Series the queries may read that no meshlet binary makes: Prometheus' own (`up` per target,
# `ALERTS` of the alert rules) and the kubelet's cAdvisor working set of the sidecar container
# (what a memory limit compares; the process_* series are the binaries' own).
EXTERNAL = {"up", "ALERTS", "container_memory_working_set_bytes"}


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL, sidecar_test.SIDECAR, SERVICES, RULES = (
        os.path.abspath(a) for a in sys.argv[1:6])
    OBSERVABILITY = os.path.dirname(RULES)
    sys.path.insert(0, os.path.dirname(os.path.realpath(sys.argv[6])))
    import queries  # noqa: E402 (tests/observability)
    unittest.main(argv=sys.argv[:1] + sys.argv[7:], verbosity=2)
