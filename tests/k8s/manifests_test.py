"""The install manifests of k8s/ as kubectl renders them, checked as an operator would read them.

Usage: manifests_test.py VALIDATE_MJS KUSTOMIZATION_YAML [unittest args]

`kubectl kustomize` (offline) renders k8s/base, k8s/install, k8s/overlays/classic-sidecars,
k8s/crds (meshlet's kinds as CustomResourceDefinitions) and k8s/cni (CNI mode's node agent: a
DaemonSet with host paths and no capability, RBAC to get pods and nothing else);
every object validates against the official Kubernetes schemas with unknown fields refused
(validate.mjs), and the pieces fit together: the webhook calls the Service on its path and the
Service's port 443 reaches the container's webhook port; the Deployment has probes on a port it
serves, resource requests, a non-root read-only security context and the data volume (emptyDir
in base, the PersistentVolumeClaim in install); RBAC grants exactly the least privilege
docs/kubernetes.md lists, and the API's roles for Kubernetes users are the three of
operator-roles.yaml; the webhook's failure policy is explicit and it never selects
kube-system or meshlet-system. Without kubectl (./dev test installs Debian's kubernetes-client
when there is none) or the validator it prints SKIP, unless MESHLET_REQUIRE_K8S_SCHEMA=1.
"""

import os
import shutil
import subprocess
import sys
import unittest

import yaml

import k8s_schema

CHECKER = None
K8S = None  # the source tree's k8s/ (kustomize checks that files are below their root)

LEAST_PRIVILEGE = [
    (("authentication.k8s.io",), ("tokenreviews",), ("create",), None),
    (("authorization.k8s.io",), ("subjectaccessreviews",), ("create",), None),
    (("",), ("services", "pods"), ("get", "list", "watch"), None),
    # Namespaces (Gateways' allowedRoutes) and Nodes (the endpoints' region), as metadata.
    (("",), ("namespaces", "nodes"), ("list", "watch"), None),
    (("",), ("configmaps",), ("create",), None),
    (("",), ("configmaps",), ("get", "patch"), ("meshlet-trust",)),
    (("discovery.k8s.io",), ("endpointslices",), ("get", "list", "watch"), None),
    (("admissionregistration.k8s.io",), ("mutatingwebhookconfigurations",), ("get", "patch"),
     ("meshlet-sidecar-injector",)),
    # The revision tags (meshlet-revision-tag-*, labelled meshlet.io/tag): read only.
    (("admissionregistration.k8s.io",), ("mutatingwebhookconfigurations",), ("list",), None),
    (("meshlet.io",), ("services", "trafficpolicies", "httproutes", "authorizationpolicies",
                       "requestauthentications", "externalservices", "meshconfigs"),
     ("get", "list", "watch"), None),
    (("gateway.networking.k8s.io",), ("httproutes", "grpcroutes", "referencegrants", "gateways",
                                      "gatewayclasses", "backendtlspolicies"),
     ("get", "list", "watch"), None),
    (("gateway.networking.k8s.io",), ("httproutes/status", "grpcroutes/status",
                                      "gateways/status", "gatewayclasses/status",
                                      "backendtlspolicies/status"),
     ("patch", "update"), None),
    (("events.k8s.io",), ("events",), ("create",), None),
]


def render(directory):
    r = subprocess.run(["kubectl", "kustomize", os.path.join(K8S, directory)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"kubectl kustomize k8s/{directory}: {r.stderr}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def one(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


class ManifestsTest(unittest.TestCase):
    def setUp(self):
        missing = CHECKER.skip_reason()
        if missing is None and shutil.which("kubectl") is None:
            missing = "needs kubectl (Debian's kubernetes-client)"
            if os.environ.get("MESHLET_REQUIRE_K8S_SCHEMA") == "1":
                raise AssertionError(missing)
        if missing:
            self.skipTest(missing)

    def check_install(self, directory):
        objects = render(directory)
        ok, report = CHECKER.validate(objects)
        self.assertTrue(ok, report)
        kinds = sorted(o["kind"] for o in objects)
        for kind in ("ClusterRole", "ClusterRoleBinding", "Deployment",
                     "MutatingWebhookConfiguration", "Namespace", "PodDisruptionBudget",
                     "Service", "ServiceAccount"):
            self.assertIn(kind, kinds)
        cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding",
                          "MutatingWebhookConfiguration"}
        for o in objects:
            if o["kind"] not in cluster_scoped:
                self.assertEqual(o["metadata"].get("namespace"), "meshlet-system", o["kind"])

        deployment = one(objects, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.assertEqual(ports["https-webhook"], 15017)
        self.assertIn("--webhook-address=0.0.0.0:15017", container["args"])
        self.assertIn("--api-address=0.0.0.0:15014", container["args"])
        for probe in ("readinessProbe", "livenessProbe"):
            self.assertIn(container[probe]["httpGet"]["port"], ports.values())
        self.assertIn("cpu", container["resources"]["requests"])
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertTrue(container["securityContext"]["readOnlyRootFilesystem"])
        self.assertFalse(container["securityContext"]["allowPrivilegeEscalation"])
        self.assertEqual(container["volumeMounts"][0]["mountPath"], "/var/lib/meshlet")
        self.assertEqual(pod["serviceAccountName"], one(objects, "ServiceAccount")["metadata"]["name"])
        self.assertEqual(
            deployment["spec"]["template"]["metadata"]["annotations"]["sidecar.meshlet.io/inject"],
            "false")

        service = one(objects, "Service")
        self.assertEqual(service["metadata"]["name"], "meshlet-control-plane")
        self.assertTrue(set(service["spec"]["selector"].items()) <=
                        set(deployment["spec"]["template"]["metadata"]["labels"].items()))
        by_port = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
        for target in by_port.values():
            self.assertIn(target, ports.values())

        webhook = one(objects, "MutatingWebhookConfiguration")
        self.assertEqual(len(webhook["webhooks"]), 2)
        for hook in webhook["webhooks"]:
            self.assertEqual(hook["failurePolicy"], "Fail")
            self.assertEqual(hook["sideEffects"], "None")
            self.assertEqual(hook["admissionReviewVersions"], ["v1"])
            svc = hook["clientConfig"]["service"]
            self.assertEqual((svc["name"], svc["namespace"], svc["path"]),
                             ("meshlet-control-plane", "meshlet-system", "/inject"))
            self.assertEqual(by_port[svc["port"]], 15017)
            excluded = [e for e in hook["namespaceSelector"]["matchExpressions"]
                        if e["key"] == "kubernetes.io/metadata.name"]
            self.assertEqual(excluded[0]["operator"], "NotIn")
            self.assertEqual(sorted(excluded[0]["values"]), ["kube-system", "meshlet-system"])
            self.assertEqual(hook["rules"][0]["operations"], ["CREATE"])
            self.assertEqual(hook["rules"][0]["resources"], ["pods"])

        roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
        self.assertEqual(sorted(roles), ["meshlet-admin", "meshlet-control-plane", "meshlet-editor",
                                         "meshlet-viewer"])
        # The API's roles for Kubernetes users: verbs on meshes.meshlet.io, each role the ones
        # below it and one more, bound to nobody here.
        for name, verbs in (("meshlet-viewer", ["view"]), ("meshlet-editor", ["view", "edit"]),
                            ("meshlet-admin", ["view", "edit", "admin"])):
            self.assertEqual(roles[name]["rules"], [{"apiGroups": ["meshlet.io"],
                                                     "resources": ["meshes"], "verbs": verbs}])
        role = roles["meshlet-control-plane"]
        granted = [(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"]),
                    tuple(r["resourceNames"]) if "resourceNames" in r else None)
                   for r in role["rules"]]
        self.assertEqual(granted, LEAST_PRIVILEGE)
        binding = one(objects, "ClusterRoleBinding")
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount",
                                                "name": "meshlet-control-plane",
                                                "namespace": "meshlet-system"}])
        # Two Roles in the control plane's namespace only. Leader election: its Lease and the
        # route-status one all revisions share.
        ns_roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
        self.assertEqual(sorted(ns_roles),
                         ["meshlet-control-plane-ca", "meshlet-control-plane-leader-election"])
        self.assertEqual(ns_roles["meshlet-control-plane-leader-election"]["rules"], [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["meshlet-control-plane", "meshlet-route-status"],
             "verbs": ["get", "update"]}])
        # The CA's Secret (--ca-secret), by name only, and nothing else.
        self.assertEqual(ns_roles["meshlet-control-plane-ca"]["rules"], [
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["meshlet-ca"],
             "verbs": ["get"]}])
        bindings = [o for o in objects if o["kind"] == "RoleBinding"]
        self.assertEqual(sorted(b["roleRef"]["name"] for b in bindings), sorted(ns_roles))
        for b in bindings:
            self.assertEqual(b["subjects"], binding["subjects"])
        pdb = one(objects, "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"])
        return objects

    def test_base(self):
        objects = self.check_install("base")
        volume = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
        self.assertEqual(volume, {"name": "data", "emptyDir": {}})
        self.assertFalse([o for o in objects if o["kind"] == "PersistentVolumeClaim"])

    def test_install_keeps_the_data_on_a_claim(self):
        objects = self.check_install("install")
        volume = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
        claim = one(objects, "PersistentVolumeClaim")
        self.assertEqual(volume["persistentVolumeClaim"]["claimName"], claim["metadata"]["name"])
        self.assertEqual(one(objects, "Deployment")["spec"]["strategy"]["type"], "Recreate")

    def test_classic_sidecars_overlay(self):
        objects = self.check_install("overlays/classic-sidecars")
        args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertIn("--inject-mode=classic", args)
        one(objects, "PersistentVolumeClaim")

    def test_crds(self):
        # k8s/crds: meshlet's kinds, cluster-scoped objects that validate as CRDs.
        objects = render("crds")
        ok, report = CHECKER.validate(objects)
        self.assertTrue(ok, report)
        self.assertEqual(sorted(o["metadata"]["name"] for o in objects),
                         ["authorizationpolicies.meshlet.io", "externalservices.meshlet.io",
                          "httproutes.meshlet.io",
                          "meshconfigs.meshlet.io", "requestauthentications.meshlet.io",
                          "services.meshlet.io", "trafficpolicies.meshlet.io"])
        for o in objects:
            self.assertEqual(o["kind"], "CustomResourceDefinition")
            self.assertNotIn("namespace", o["metadata"])
            self.assertEqual(o["metadata"]["labels"]["app.kubernetes.io/part-of"], "meshlet")
        # The validator refuses a CRD with an unknown field: the check above has teeth.
        broken = dict(objects[0], spec=dict(objects[0]["spec"], scopee="Cluster"))
        ok, report = CHECKER.validate([broken])
        self.assertFalse(ok, report)
        self.assertIn("scopee", report)

    def test_cni_node_agent(self):
        def daemonset_name(objects):
            return one(objects, "DaemonSet")["metadata"]["name"]

        # k8s/cni: the only pod with host access, with the least the plugin needs.
        objects = render("cni")
        ok, report = CHECKER.validate(objects)
        self.assertTrue(ok, report)
        self.assertEqual(sorted(o["kind"] for o in objects),
                         ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "ServiceAccount"])
        for o in objects:
            self.assertEqual(o["metadata"]["labels"]["app.kubernetes.io/part-of"], "meshlet")
        role = one(objects, "ClusterRole")
        self.assertEqual(role["rules"], [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
            {"apiGroups": ["apps"], "resources": ["daemonsets"],
             "resourceNames": [daemonset_name(objects)], "verbs": ["get"]}])
        self.assertEqual(one(objects, "ClusterRoleBinding")["subjects"],
                         [{"kind": "ServiceAccount", "name": "meshlet-cni",
                           "namespace": "meshlet-system"}])
        daemonset = one(objects, "DaemonSet")
        self.assertEqual(daemonset["metadata"]["namespace"], "meshlet-system")
        pod = daemonset["spec"]["template"]["spec"]
        self.assertEqual(pod["serviceAccountName"], "meshlet-cni")
        self.assertTrue(pod["hostNetwork"])
        container = pod["containers"][0]
        self.assertTrue(container["image"].startswith("meshlet-cni:"), container["image"])
        security = container["securityContext"]
        self.assertNotIn("privileged", security)
        self.assertEqual(security["capabilities"], {"drop": ["ALL"]})
        self.assertFalse(security["allowPrivilegeEscalation"])
        self.assertTrue(security["readOnlyRootFilesystem"])
        # Host paths mounted at the same paths (the plugin reads them on the node), each named
        # by the agent's flags.
        host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        self.assertEqual(host, mounts)
        self.assertEqual(sorted(host.values()),
                         ["/etc/cni/net.d", "/opt/cni/bin", "/var/run/meshlet-cni"])
        args = container["args"]
        for flag, path in (("--cni-conf-dir", "/etc/cni/net.d"), ("--cni-bin-dir", "/opt/cni/bin"),
                           ("--state-dir", "/var/run/meshlet-cni")):
            self.assertIn(f"{flag}={path}", args)
        self.assertIn("--uninstall-on-exit", args)
        # Its own DaemonSet, asked at exit (kept in the chain through a rolling update), and
        # the race repair on its node's pods.
        self.assertIn(f"--daemonset=$(POD_NAMESPACE)/{daemonset['metadata']['name']}", args)
        self.assertIn("--repair-mode=evict", args)
        env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
        self.assertEqual(env, {"NODE_NAME": "spec.nodeName", "POD_NAMESPACE": "metadata.namespace"})
        port = container["ports"][0]["containerPort"]
        self.assertIn(f"--http-address=0.0.0.0:{port}", args)
        self.assertEqual(container["readinessProbe"]["httpGet"], {"path": "/readyz", "port": port})
        self.assertEqual(container["livenessProbe"]["httpGet"], {"path": "/healthz", "port": port})
        self.assertEqual(pod["tolerations"], [{"operator": "Exists"}])

    def test_example_namespace(self):
        with open(os.path.join(K8S, "example", "namespace.yaml")) as f:
            namespace = yaml.safe_load(f)
        ok, report = CHECKER.validate([namespace])
        self.assertTrue(ok, report)
        self.assertEqual(namespace["metadata"]["labels"]["meshlet.io/inject"], "enabled")


if __name__ == "__main__":
    CHECKER = k8s_schema.Checker(sys.argv[1])
    K8S = os.path.dirname(os.path.dirname(os.path.realpath(sys.argv[2])))
    del sys.argv[1:3]
    unittest.main(verbosity=2)
