#!/usr/bin/env python3
"""Validates manifests rendered by `helm template`, offline.

Every object is checked against the Kubernetes OpenAPI schemas that the PyPI package
kubernetes-validate ships (strict: unknown fields are errors), for each Kubernetes version
given. Then the chart's own rules: pods run as non-root with a read-only root file system and
no capabilities, every container has resource requests and a memory limit, long-running
containers have probes, references between objects (Services, PDBs, the HPA, ConfigMaps,
Secrets, ServiceMonitors) point at objects the render contains, TOML settings files parse, and
the dispatcher's termination grace exceeds its shutdown grace.

Usage: check_manifests.py [-k VERSION]... [--external-secret NAME]... [--expect KIND=N]...
                          FILE...
Exit status 1 with one line per problem; 0 with a one-line summary per file.
"""

import argparse
import collections
import sys
import tomllib

import kubernetes_validate.utils as kv
import yaml

# Kinds the plain Kubernetes schemas do not have; checked for shape here instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--kubernetes-version", action="append", required=True)
    parser.add_argument("--external-secret", action="append", default=[],
                        help="a Secret the render may reference without containing it")
    parser.add_argument("--expect", action="append", default=[],
                        help="KIND=N: the render must contain exactly N objects of KIND")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    failed = False
    for path in args.files:
        try:
            with open(path, encoding="utf-8") as f:
                docs = [d for d in yaml.safe_load_all(f) if d]
        except (OSError, yaml.YAMLError) as e:
            print(f"ERROR {path}: cannot read the manifests: {e}")
            failed = True
            continue
        problems = check(docs, args.kubernetes_version, set(args.external_secret), args.expect)
        for problem in problems:
            print(f"ERROR {path}: {problem}")
        if problems:
            failed = True
            continue
        kinds = collections.Counter(d["kind"] for d in docs)
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        versions = ", ".join(args.kubernetes_version)
        print(f"ok {path}: {len(docs)} objects ({summary}); strict schemas of Kubernetes {versions}")
    return 1 if failed else 0


def check(docs, versions, external_secrets, expect):
    problems = []
    schema_failed = False
    seen = set()
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if (doc.get("kind"), name) in seen:
            problems.append(f"{name}: rendered twice")
        seen.add((doc.get("kind"), name))
        invalid = schema_problems(doc, versions)
        problems += [f"{name}: {p}" for p in invalid]
        schema_failed |= bool(invalid)
        if not invalid:
            problems += [f"{name}: {p}" for p in policy_problems(doc)]
    if schema_failed:
        # The rules below assume objects of the schemas' shape.
        return problems
    problems += reference_problems(docs, external_secrets)
    counts = collections.Counter(d["kind"] for d in docs)
    for item in expect:
        kind, _, want = item.partition("=")
        if counts[kind] != int(want):
            problems.append(f"expected {want} {kind}, rendered {counts[kind]}")
    return problems


def schema_problems(doc, versions):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_KINDS:
        return service_monitor_problems(doc)
    problems = []
    for version in versions:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            problems.append(f"invalid against Kubernetes {version} at {path or '(root)'}: {e.message}")
        except kv.SchemaNotFoundError as e:
            problems.append(e.message)
    return problems


def service_monitor_problems(doc):
    spec = doc.get("spec") or {}
    problems = []
    if not (spec.get("selector") or {}).get("matchLabels"):
        problems.append("spec.selector.matchLabels is missing")
    endpoints = spec.get("endpoints") or []
    if not endpoints or not all(e.get("port") and e.get("path") for e in endpoints):
        problems.append("every spec.endpoints entry needs a port name and a path")
    return problems


def pod_spec(doc):
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def policy_problems(doc):
    spec = pod_spec(doc)
    if spec is None:
        return []
    problems = []
    if not (spec.get("securityContext") or {}).get("runAsNonRoot"):
        problems.append("pod securityContext.runAsNonRoot is not true")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken is not false (hookd never calls the API)")
    containers = [("container", c) for c in spec.get("containers", [])]
    containers += [("init container", c) for c in spec.get("initContainers", [])]
    for what, c in containers:
        label = f"{what} {c.get('name')}"
        sc = c.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{label}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{label}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{label}: capabilities.drop does not contain ALL")
        resources = c.get("resources") or {}
        requests = resources.get("requests") or {}
        if not (requests.get("cpu") and requests.get("memory")):
            problems.append(f"{label}: resources.requests needs cpu and memory")
        if not (resources.get("limits") or {}).get("memory"):
            problems.append(f"{label}: resources.limits.memory is missing")
        if doc["kind"] == "Deployment" and what == "container":
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    problems.append(f"{label}: {probe} is missing")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        grace = env.get("HOOKD_SHUTDOWN_GRACE_SECS")
        if grace is not None and spec.get("terminationGracePeriodSeconds", 30) <= int(grace):
            problems.append(f"{label}: terminationGracePeriodSeconds must exceed "
                            f"HOOKD_SHUTDOWN_GRACE_SECS ({grace})")
    return problems


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def reference_problems(docs, external_secrets):
    problems = []
    by_kind = collections.defaultdict(dict)
    for d in docs:
        by_kind[d["kind"]][d["metadata"]["name"]] = d
    pod_labels = [d["spec"]["template"]["metadata"]["labels"]
                  for d in by_kind["Deployment"].values()]

    def selects_pods(selector):
        return any(matches(selector, labels) for labels in pod_labels)

    for name, svc in by_kind["Service"].items():
        if not selects_pods(svc["spec"].get("selector")):
            problems.append(f"Service/{name}: its selector matches no Deployment's pods")
    for name, pdb in by_kind["PodDisruptionBudget"].items():
        if not selects_pods(pdb["spec"]["selector"].get("matchLabels")):
            problems.append(f"PodDisruptionBudget/{name}: its selector matches no Deployment's pods")
    for name, hpa in by_kind["HorizontalPodAutoscaler"].items():
        target = hpa["spec"]["scaleTargetRef"]
        deployment = by_kind[target["kind"]].get(target["name"])
        if deployment is None:
            problems.append(f"HorizontalPodAutoscaler/{name}: no {target['kind']} {target['name']}")
        elif "replicas" in deployment["spec"]:
            problems.append(f"HorizontalPodAutoscaler/{name}: its Deployment sets spec.replicas, "
                            "which every upgrade would reset")
    for name, sm in by_kind["ServiceMonitor"].items():
        selector = sm["spec"]["selector"].get("matchLabels")
        services = [s for s in by_kind["Service"].values()
                    if matches(selector, s["metadata"].get("labels", {}))]
        ports = {p.get("name") for s in services for p in s["spec"]["ports"]}
        if not services:
            problems.append(f"ServiceMonitor/{name}: its selector matches no Service")
        for endpoint in sm["spec"]["endpoints"]:
            if endpoint["port"] not in ports:
                problems.append(f"ServiceMonitor/{name}: no selected Service has port {endpoint['port']}")

    for name, cm in by_kind["ConfigMap"].items():
        for key, text in (cm.get("data") or {}).items():
            if key.endswith(".toml"):
                try:
                    tomllib.loads(text)
                except tomllib.TOMLDecodeError as e:
                    problems.append(f"ConfigMap/{name}: {key} is not valid TOML: {e}")

    secrets = {n: set((s.get("data") or {}) | (s.get("stringData") or {}))
               for n, s in by_kind["Secret"].items()}
    for kind in ("Deployment", "Job"):
        for name, d in by_kind[kind].items():
            spec = d["spec"]["template"]["spec"]
            for volume in spec.get("volumes", []):
                ref = (volume.get("configMap") or {}).get("name")
                if ref and ref not in by_kind["ConfigMap"]:
                    problems.append(f"{kind}/{name}: volume {volume['name']} needs ConfigMap {ref}")
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                for env in c.get("env", []):
                    ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                    if not ref or ref["name"] in external_secrets:
                        continue
                    if ref["name"] not in secrets:
                        problems.append(f"{kind}/{name}: {env['name']} needs Secret {ref['name']}")
                    elif ref["key"] not in secrets[ref["name"]] and not ref.get("optional"):
                        problems.append(f"{kind}/{name}: {env['name']} needs key {ref['key']} "
                                        f"in Secret {ref['name']}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
