"""`meshctl install`, `uninstall` and `check --pre` as an operator runs them.

Usage: install_test.py VALIDATE_MJS MESHCTL KUSTOMIZATION_YAML [unittest args]

- `meshctl install` with no options gives exactly the objects `kubectl kustomize k8s/install`
  gives (one set of manifests, two ways to render them), valid against the official schemas;
- each --set key changes what it says, everywhere the value is named (the namespace in every
  namespaced object, the RBAC subject, the webhook's service and its namespace exclusion), and
  the result still validates and passes check --pre; bad values are usage errors (exit 2) saying
  why, and more than one replica is refused with the reason;
- `install --secrets` gives the Secrets of an install with etcd, fresh each time and valid;
- `install --crds` gives exactly the CustomResourceDefinitions `kubectl kustomize k8s/crds` gives,
  valid; `uninstall --crds` lists them; --crds does not go with --secrets or --keep-data;
- `uninstall` lists the same objects webhook first and namespace last, --keep-data without the
  namespace and the data claim;
- `check --pre` passes every rendering (meshctl's and kustomize's) and finds each mistake of a
  set of broken installs, naming object and field (exit 1).
"""

import copy
import json
import os
import shutil
import subprocess
import sys
import unittest

import yaml

import k8s_schema

CHECKER = MESHCTL = K8S = None


def meshctl(*args, stdin=None, expect=0):
    p = subprocess.run([MESHCTL, *args], input=stdin, capture_output=True, text=True, timeout=30)
    if p.returncode != expect:
        raise AssertionError(f"meshctl {args}: exit {p.returncode}, expected {expect}\n"
                             f"{p.stdout}{p.stderr}")
    return p


def objects_of(text):
    return [d for d in yaml.safe_load_all(text) if d]


def by_key(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def one(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, (kind, len(found))
    return found[0]


class InstallTest(unittest.TestCase):
    def setUp(self):
        reason = CHECKER.skip_reason()
        if reason is None and shutil.which("kubectl") is None:
            reason = "needs kubectl (Debian's kubernetes-client)"
            if os.environ.get("MESHLET_REQUIRE_K8S_SCHEMA") == "1":
                raise AssertionError(reason)
        if reason:
            self.skipTest(reason)

    def assertValid(self, objects):
        ok, report = CHECKER.validate(objects)
        self.assertTrue(ok, report)

    def kustomized(self, *directories):
        """The objects `kubectl kustomize` renders from each of k8s/'s directories, by key."""
        objects = {}
        for directory in directories:
            r = subprocess.run(["kubectl", "kustomize", os.path.join(K8S, directory)],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            objects.update(by_key(objects_of(r.stdout)))
        return objects

    def pre_check(self, objects, expect=0):
        text = "".join("---\n" + yaml.safe_dump(o) for o in objects)
        return meshctl("check", "--pre", "-f", "-", stdin=text, expect=expect)

    def test_defaults_are_kustomize_install(self):
        rendered = objects_of(meshctl("install").stdout)
        r = subprocess.run(["kubectl", "kustomize", os.path.join(K8S, "install")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(by_key(rendered), by_key(objects_of(r.stdout)))
        self.assertValid(rendered)
        self.assertIn("install checks passed: 16 objects", self.pre_check(rendered).stdout)
        # JSON too.
        listed = json.loads(meshctl("install", "-o", "json").stdout)
        self.assertEqual(listed["kind"], "List")
        self.assertEqual(by_key(listed["items"]), by_key(rendered))
        # Apply order: the namespace first, the claim before the Deployment mounting it.
        kinds = [o["kind"] for o in rendered]
        self.assertEqual(kinds[0], "Namespace")
        self.assertLess(kinds.index("PersistentVolumeClaim"), kinds.index("Deployment"))

    def test_cni_mode_is_kustomize_install_and_cni(self):
        """--set cni=true: k8s/install's objects and k8s/cni's as kustomize renders them, the
        node agent before the control plane, which injects for the plugin."""
        rendered = objects_of(meshctl("install", "--set", "cni=true").stdout)
        expected = self.kustomized("install", "cni")
        deployment = expected[("Deployment", "meshlet-control-plane")]
        deployment["spec"]["template"]["spec"]["containers"][0]["args"].append(
            "--inject-capture=cni")
        self.assertEqual(by_key(rendered), expected)
        self.assertValid(rendered)
        self.assertIn("install checks passed: 20 objects", self.pre_check(rendered).stdout)
        kinds = [o["kind"] for o in rendered]
        self.assertLess(kinds.index("DaemonSet"), kinds.index("Deployment"))

    def test_gateway_is_kustomize_install_and_gateway(self):
        """--set gateway=true: k8s/install's objects and k8s/gateway's GatewayClass and Secret
        read (ClusterRole and binding) as kustomize renders them, after the control plane."""
        rendered = objects_of(meshctl("install", "--set", "gateway=true").stdout)
        expected = self.kustomized("install", "gateway")
        self.assertEqual(by_key(rendered), expected)
        gateway_class = expected[("GatewayClass", "meshlet")]
        self.assertEqual(gateway_class["spec"]["controllerName"], "meshlet.io/gateway-controller")
        self.assertNotIn("namespace", gateway_class["metadata"])
        self.assertValid(rendered)
        binding = expected[("ClusterRoleBinding", "meshlet-control-plane-gateway")]
        self.assertEqual(binding["subjects"][0]["name"], "meshlet-control-plane")
        self.assertIn("install checks passed: 19 objects", self.pre_check(rendered).stdout)
        kinds = [o["kind"] for o in rendered]
        self.assertLess(kinds.index("Deployment"), kinds.index("GatewayClass"))

    def test_crds_are_kustomize_crds(self):
        rendered = objects_of(meshctl("install", "--crds").stdout)
        r = subprocess.run(["kubectl", "kustomize", os.path.join(K8S, "crds")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(by_key(rendered), by_key(objects_of(r.stdout)))
        self.assertEqual({o["kind"] for o in rendered}, {"CustomResourceDefinition"})
        self.assertIn("trafficpolicies.meshlet.io", {o["metadata"]["name"] for o in rendered})
        self.assertValid(rendered)
        listed = json.loads(meshctl("install", "--crds", "-o", "json").stdout)
        self.assertEqual(by_key(listed["items"]), by_key(rendered))
        # The install itself holds none of them: uninstalling keeps the policies.
        self.assertNotIn("CustomResourceDefinition",
                         {o["kind"] for o in objects_of(meshctl("install").stdout)})
        removed = objects_of(meshctl("uninstall", "--crds").stdout)
        self.assertEqual(set(by_key(removed)), set(by_key(rendered)))
        p = meshctl("install", "--crds", "--secrets", "--set", "etcd=bundled", expect=2)
        self.assertIn("--crds and --secrets", p.stderr)
        p = meshctl("uninstall", "--crds", "--keep-data", expect=2)
        self.assertIn("deletes the policies", p.stderr)

    def test_set_changes_what_it_names(self):
        sets = ["namespace=mesh", "image=registry.example.com/cp:1.2.3",
                "proxyImage=registry.example.com/proxy:1.2.3", "injectMode=classic",
                "trustDomain=example.org", "resources.requests.cpu=250m",
                "resources.requests.memory=256Mi", "resources.limits.memory=2Gi",
                "store=ephemeral", "webhook.failurePolicy=Ignore", "replicas=1"]
        args = [a for s in sets for a in ("--set", s)]
        objects = objects_of(meshctl("install", *args).stdout)
        self.assertValid(objects)
        self.pre_check(objects)
        for o in objects:
            if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding",
                                 "MutatingWebhookConfiguration"):
                self.assertEqual(o["metadata"]["namespace"], "mesh", o["kind"])
        self.assertEqual(one(objects, "Namespace")["metadata"]["name"], "mesh")
        self.assertEqual(one(objects, "ClusterRoleBinding")["subjects"][0]["namespace"], "mesh")
        self.assertNotIn("PersistentVolumeClaim", [o["kind"] for o in objects])
        deployment = one(objects, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        self.assertEqual(container["image"], "registry.example.com/cp:1.2.3")
        for arg in ("--inject-proxy-image=registry.example.com/proxy:1.2.3",
                    "--inject-mode=classic", "--trust-domain=example.org"):
            self.assertIn(arg, container["args"])
        self.assertEqual(container["resources"], {"requests": {"cpu": "250m", "memory": "256Mi"},
                                                  "limits": {"memory": "2Gi"}})
        self.assertEqual(pod["volumes"][0], {"name": "data", "emptyDir": {}})
        for hook in one(objects, "MutatingWebhookConfiguration")["webhooks"]:
            self.assertEqual(hook["failurePolicy"], "Ignore")
            self.assertEqual(hook["clientConfig"]["service"]["namespace"], "mesh")
            excluded = [e for e in hook["namespaceSelector"]["matchExpressions"]
                        if e["key"] == "kubernetes.io/metadata.name"][0]["values"]
            self.assertEqual(sorted(excluded), ["kube-system", "mesh"])
        claim = objects_of(meshctl("install", "--set", "storeSize=5Gi").stdout)
        self.assertEqual(one(claim, "PersistentVolumeClaim")["spec"]["resources"]["requests"],
                         {"storage": "5Gi"})

    def test_replicas_on_etcd(self):
        objects = objects_of(meshctl("install", "--set", "replicas=3", "--set",
                                     "etcd=https://etcd-0.etcd:2379,etcd-1.etcd:2379",
                                     "--set", "etcd.tlsSecret=etcd-client").stdout)
        self.assertValid(objects)
        self.pre_check(objects)
        self.assertNotIn("PersistentVolumeClaim", [o["kind"] for o in objects])
        deployment = one(objects, "Deployment")
        self.assertEqual(deployment["spec"]["replicas"], 3)
        self.assertEqual(deployment["spec"]["strategy"],
                         {"type": "RollingUpdate",
                          "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        self.assertIn("--store=https://etcd-0.etcd:2379,etcd-1.etcd:2379", container["args"])
        self.assertIn("--replica-name=$(POD_NAME)", container["args"])
        self.assertIn("--etcd-cert=/etc/meshlet/etcd/tls.crt", container["args"])
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        self.assertIn({"name": "etcd-tls", "secret": {"secretName": "etcd-client",
                                                      "defaultMode": 0o440}}, volumes)
        self.assertIn({"name": "store-key", "secret": {"secretName": "meshlet-store-key",
                                                       "defaultMode": 0o440}}, volumes)
        self.assertIn("--store-encryption-key-file=/etc/meshlet/store-key/store-key",
                      container["args"])
        # The Job that makes the store key, with the control plane's image.
        job = one(objects, "Job")
        self.assertEqual(job["spec"]["template"]["spec"]["containers"][0]["image"],
                         container["image"])
        self.assertEqual(job["spec"]["template"]["spec"]["serviceAccountName"], "meshlet-install")
        self.assertIn({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath":
                                                                     "metadata.name"}}},
                      container["env"])

    def test_a_revision_beside_the_unnamed_install(self):
        """--set revision: schema-valid, its own names, and together with the unnamed install
        no object of one is the other's (kubectl apply of both keeps both), but the namespace
        and the operator roles, which are the same."""
        objects = objects_of(meshctl("install", "--set", "revision=canary", "--set",
                                     "caSecret=meshlet-ca").stdout)
        self.assertValid(objects)
        self.pre_check(objects)
        unnamed = by_key(objects_of(meshctl("install").stdout))
        shared = {key for key in by_key(objects) if key in unnamed}
        self.assertEqual(shared, {("Namespace", "meshlet-system"),
                                  ("ClusterRole", "meshlet-viewer"),
                                  ("ClusterRole", "meshlet-editor"),
                                  ("ClusterRole", "meshlet-admin")})
        for key in shared:
            self.assertEqual(by_key(objects)[key], unnamed[key], key)
        service = by_key(objects)[("Service", "meshlet-control-plane-canary")]
        self.assertEqual(service["spec"]["selector"]["app"], "meshlet-control-plane-canary")
        deployment = one(objects, "Deployment")
        self.assertIn("--revision=canary",
                      deployment["spec"]["template"]["spec"]["containers"][0]["args"])
        self.assertEqual(deployment["spec"]["template"]["metadata"]["labels"]["app"],
                         "meshlet-control-plane-canary")
        removed = {(o["kind"], o["metadata"]["name"]) for o in objects_of(
            meshctl("uninstall", "--set", "revision=canary").stdout)}
        self.assertFalse(removed & shared)

    def test_replicas_on_a_bundled_etcd(self):
        objects = objects_of(meshctl("install", "--set", "replicas=3", "--set",
                                     "etcd=bundled").stdout)
        self.assertValid(objects)
        self.pre_check(objects)
        etcd = one(objects, "StatefulSet")
        self.assertEqual((etcd["metadata"]["name"], etcd["spec"]["replicas"]), ("meshlet-etcd", 3))
        policy = one(objects, "NetworkPolicy")
        # The control plane's pods are the ones the policy lets in.
        deployment = one(objects, "Deployment")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
        self.assertTrue(all(labels.get(k) == v for k, v in allowed.items()), (allowed, labels))
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        self.assertIn("--store=https://meshlet-etcd-0.meshlet-etcd.meshlet-system.svc:2379,"
                      "meshlet-etcd-1.meshlet-etcd.meshlet-system.svc:2379,"
                      "meshlet-etcd-2.meshlet-etcd.meshlet-system.svc:2379", container["args"])
        self.assertNotIn("--etcd-insecure-plaintext", container["args"])
        # Each Secret mounted by its user alone: the members' key by etcd, the client key and
        # the store key by the control plane.
        secrets = {v["secret"]["secretName"]
                   for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v}
        self.assertEqual(secrets, {"meshlet-etcd-client", "meshlet-store-key"})
        self.assertEqual({v["secret"]["secretName"]
                          for v in etcd["spec"]["template"]["spec"]["volumes"]},
                         {"meshlet-etcd-member"})
        self.assertIn("--client-cert-auth", etcd["spec"]["template"]["spec"]["containers"][0]["args"])
        roles = sorted(o["metadata"]["name"] for o in objects if o["kind"] == "Role")
        self.assertEqual(roles, ["meshlet-control-plane-ca", "meshlet-control-plane-leader-election",
                                 "meshlet-install"])

    def test_secrets_for_the_job_or_made_offline(self):
        secrets = objects_of(meshctl("install", "--secrets", "--set", "namespace=mesh",
                                     "--set", "etcd=bundled").stdout)
        self.assertValid(secrets)
        self.assertEqual([(o["kind"], o["metadata"]["name"], o["metadata"]["namespace"], o["type"])
                          for o in secrets],
                         [("Secret", "meshlet-store-key", "mesh", "Opaque"),
                          ("Secret", "meshlet-etcd-ca", "mesh", "Opaque"),
                          ("Secret", "meshlet-etcd-member", "mesh", "kubernetes.io/tls"),
                          ("Secret", "meshlet-etcd-client", "mesh", "kubernetes.io/tls")])
        # The CA kept to renew the certificates, which carry its certificate alone.
        self.assertEqual(sorted(secrets[1]["data"]), ["ca.crt", "ca.key"])
        for certificate in secrets[2:]:
            self.assertEqual(sorted(certificate["data"]), ["ca.crt", "tls.crt", "tls.key"])
            self.assertEqual(certificate["data"]["ca.crt"], secrets[1]["data"]["ca.crt"])
        # Fresh every time: nothing in them comes from the binary.
        again = objects_of(meshctl("install", "--secrets", "--set", "etcd=bundled").stdout)
        self.assertNotEqual(again[0]["data"], secrets[0]["data"])
        # An etcd of one's own: the store key only. No etcd: nothing to make.
        external = objects_of(meshctl("install", "--secrets", "--set",
                                      "etcd=https://etcd.example:2379").stdout)
        self.assertEqual([o["metadata"]["name"] for o in external], ["meshlet-store-key"])
        self.assertIn("only with etcd", meshctl("install", "--secrets", expect=2).stderr)
        self.assertIn("--create and --renew-etcd-certificates go with --secrets",
                      meshctl("install", "--create", expect=2).stderr)

    def test_bad_values_are_usage_errors(self):
        cases = [("nosuch=1", 'unknown --set key "nosuch"; known: namespace, image'),
                 ("namespace", 'expected KEY=VALUE'),
                 ("namespace=Mesh_1", "must be a namespace name"),
                 ("replicas=3", "more than one replica needs a shared store; add --set "
                                "etcd=bundled or --set etcd=https://HOST:PORT"),
                 ("etcd=etcd://etcd:2379", "must be https://HOST:PORT"),
                 ("etcd.image=has space", ""),
                 ("replicas=zero", "must be a positive integer"),
                 ("resources.requests.memory=lots", "must be a positive Kubernetes quantity"),
                 ("store=s3", "must be persistent or ephemeral"),
                 ("webhook.failurePolicy=Sometimes", "must be Fail or Ignore"),
                 ("injectMode=sidecar", "must be native or classic"),
                 ("image=has space", "")]
        for assignment, message in cases:
            p = meshctl("install", "--set", assignment, expect=2)
            self.assertEqual(p.stdout, "")
            self.assertIn(message, p.stderr, assignment)

    def test_uninstall_order(self):
        installed = objects_of(meshctl("install").stdout)
        removed = objects_of(meshctl("uninstall").stdout)
        self.assertEqual(by_key(removed), by_key(installed))
        self.assertEqual(removed[0]["kind"], "MutatingWebhookConfiguration")
        self.assertEqual(removed[-1]["kind"], "Namespace")
        kept = objects_of(meshctl("uninstall", "--keep-data").stdout)
        self.assertEqual(sorted(by_key(installed)) , sorted(
            list(by_key(kept)) + [("Namespace", "meshlet-system"),
                                  ("PersistentVolumeClaim", "meshlet-control-plane-data")]))
        other = objects_of(meshctl("uninstall", "--set", "namespace=mesh").stdout)
        self.assertEqual(one(other, "Deployment")["metadata"]["namespace"], "mesh")

    def test_check_pre_passes_every_rendering(self):
        for directory in ("base", "install", "overlays/classic-sidecars"):
            r = subprocess.run(["kubectl", "kustomize", os.path.join(K8S, directory)],
                               capture_output=True, text=True, timeout=60)
            self.pre_check(objects_of(r.stdout))

    def test_check_pre_finds_mistakes(self):
        good = objects_of(meshctl("install").stdout)

        def broken(change):
            objects = copy.deepcopy(good)
            by_kind = {}
            for o in objects:  # the first of a kind: the control plane's ClusterRole comes first
                by_kind.setdefault(o["kind"], o)
            change(by_kind, objects)
            return objects

        def webhook_service(k, _):
            k["MutatingWebhookConfiguration"]["webhooks"][1]["clientConfig"]["service"][
                "name"] = "control-plane"

        def no_exclusion(k, _):
            k["MutatingWebhookConfiguration"]["webhooks"][0]["namespaceSelector"] = {
                "matchLabels": {"meshlet.io/inject": "enabled"}}

        def three(k, _):
            k["Deployment"]["spec"]["replicas"] = 3

        def no_tokenreviews(k, _):
            k["ClusterRole"]["rules"] = k["ClusterRole"]["rules"][1:]

        def no_access_reviews(k, _):
            k["ClusterRole"]["rules"] = [r for r in k["ClusterRole"]["rules"]
                                         if r["resources"] != ["subjectaccessreviews"]]

        def no_pod_namespace(k, _):
            k["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"] = []

        def garbage_bundle(k, _):
            k["MutatingWebhookConfiguration"]["webhooks"][0]["clientConfig"]["caBundle"] = \
                "bm90IGEgY2VydA=="

        def injected(k, _):
            del k["Deployment"]["spec"]["template"]["metadata"]["annotations"]

        def wrong_port(k, _):
            for p in k["Service"]["spec"]["ports"]:
                if p["port"] == 443:
                    p["targetPort"] = 8443

        def no_deployment(_, objects):
            objects[:] = [o for o in objects if o["kind"] != "Deployment"]

        cases = [
            (webhook_service, 'MutatingWebhookConfiguration "meshlet-sidecar-injector": '
                              'webhooks[1].clientConfig.service: meshlet-system/control-plane is '
                              'not the Service meshlet-system/meshlet-control-plane'),
            (no_exclusion, "webhooks[0].namespaceSelector: does not exclude the control plane's "
                           'namespace "meshlet-system"'),
            (three, 'Deployment "meshlet-control-plane": spec.replicas: must be 1'),
            (no_tokenreviews, "may not create authentication.k8s.io tokenreviews"),
            (no_access_reviews, "may not create authorization.k8s.io subjectaccessreviews"),
            (no_pod_namespace, "POD_NAMESPACE from fieldRef metadata.namespace is missing"),
            (garbage_bundle, "webhooks[0].clientConfig.caBundle: not base64 of PEM"),
            (injected, "sidecar.meshlet.io/inject must be \"false\""),
            (wrong_port, "webhooks[0].clientConfig.service.port: 443 does not reach the control "
                         "plane's webhook port 15017"),
            (no_deployment, "no Deployment meshlet-control-plane (or running the meshlet-control-plane image)"),
        ]
        for change, message in cases:
            p = self.pre_check(broken(change), expect=1)
            self.assertIn(message, p.stderr, change.__name__)
            self.assertIn("error: ", p.stderr)
        # Usage: --pre needs -f, -f needs --pre.
        self.assertIn("--pre and -f go together",
                      meshctl("check", "--pre", expect=2).stderr)


if __name__ == "__main__":
    CHECKER = k8s_schema.Checker(sys.argv[1])
    MESHCTL = os.path.abspath(sys.argv[2])
    K8S = os.path.dirname(os.path.dirname(os.path.realpath(sys.argv[3])))
    del sys.argv[1:4]
    unittest.main(verbosity=2)
