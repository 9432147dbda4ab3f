#!/usr/bin/env bash
# Renders the Helm chart and validates it offline: `helm lint --strict`, `helm template` of
# each values file in the chart's ci/ folder, and the rendered manifests against the
# Kubernetes schemas and the chart's own rules (check_manifests.py). `make deploy-check` runs
# it with the tools it installs into .tools/; set HELM and PYTHONPATH to run it by hand.
set -euo pipefail

cd "$(dirname "$0")/.."
helm=${HELM:-helm}
chart=deploy/helm/hookd
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
# kubernetes-validate has schemas for.
kube_versions=(1.27.0 1.37.0)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$helm" version --short

echo "== helm lint --strict"
"$helm" lint --strict "$chart" >"$out/lint.log" 2>&1 || { cat "$out/lint.log"; exit 1; }
for values in "$chart"/ci/*-values.yaml; do
    "$helm" lint --strict "$chart" -f "$values" >"$out/lint.log" 2>&1 || { cat "$out/lint.log"; exit 1; }
done
echo "ok: the chart alone and with each of $(ls "$chart"/ci/*-values.yaml | xargs -n1 basename | paste -sd' ')"

echo "== values the chart must refuse"
# Each: a --set, and the message that must name the problem.
refusals=(
    "image.tag=x|secrets.encryptionKey is required"
    "secrets.encryptionKey=c2hvcnQ=|does not match pattern"
    "secrets.dispatcherToken=short|does not match pattern"
    "migrations.mode=hook|value must be one of"
    "dispatcher.settings.listen=0.0.0.0:1|invalid propertyName 'listen'"
    "controlplane.replicaCount=2|additional properties 'controlplane' not allowed"
)
for refusal in "${refusals[@]}"; do
    set_value=${refusal%%|*} message=${refusal#*|}
    values=$chart/ci/default-values.yaml
    [[ $set_value == image.tag=* ]] && values=/dev/null
    if "$helm" template hookd "$chart" -f "$values" --set "$set_value" >/dev/null 2>"$out/refused.log"; then
        echo "helm template accepted --set $set_value; it must refuse it" >&2
        exit 1
    fi
    grep -qF -- "$message" "$out/refused.log" || { cat "$out/refused.log"; exit 1; }
done
echo "ok: ${#refusals[@]} refusals, each naming the value (e.g. without secrets: secrets.encryptionKey is required)"

render() {
    local name=$1 values=$2
    for v in "${kube_versions[@]}"; do
        "$helm" template hookd "$chart" --namespace hookd --kube-version "$v" -f "$values" \
            >"$out/$name-$v.yaml"
    done
    # The chart does not branch on the Kubernetes version: both renders are the same.
    if ! cmp -s "$out/$name-${kube_versions[0]}.yaml" "$out/$name-${kube_versions[1]}.yaml"; then
        echo "$name: the renders for Kubernetes ${kube_versions[*]} differ; validate each" >&2
        return 1
    fi
}

k_flags=()
for v in "${kube_versions[@]}"; do k_flags+=(-k "$v"); done
check_manifests() {
    # From the renders' folder, so messages name the render rather than a temporary path.
    (cd "$out" && python3 "$OLDPWD/deploy/check_manifests.py" "${k_flags[@]}" "$@")
}

echo "== helm template + schema validation (kubernetes-validate, strict)"
render default "$chart/ci/default-values.yaml"
check_manifests \
    --expect Deployment=2 --expect Service=2 --expect HorizontalPodAutoscaler=1 \
    --expect PodDisruptionBudget=2 --expect Job=1 --expect Secret=2 --expect ConfigMap=1 \
    --expect ServiceAccount=1 --expect ServiceMonitor=0 \
    default-${kube_versions[0]}.yaml

render production "$chart/ci/production-values.yaml"
check_manifests --external-secret hookd-secrets \
    --expect Deployment=2 --expect HorizontalPodAutoscaler=1 --expect PodDisruptionBudget=2 \
    --expect Job=1 --expect Secret=0 --expect ServiceMonitor=0 \
    production-${kube_versions[0]}.yaml

render servicemonitor "$chart/ci/servicemonitor-values.yaml"
check_manifests \
    --expect Deployment=2 --expect HorizontalPodAutoscaler=0 --expect Job=0 --expect Secret=1 \
    --expect ServiceMonitor=2 \
    servicemonitor-${kube_versions[0]}.yaml

echo "== NATS values (deploy/nats-values.yaml) against the chart's defaults"
# The NATS chart cannot be rendered offline; its values are checked for what hookd relies on.
python3 - "$chart/values.yaml" deploy/nats-values.yaml <<'PY'
import sys, yaml
hookd, nats = (yaml.safe_load(open(p)) for p in sys.argv[1:3])
config = nats["config"]
problems = []
if not config["cluster"].get("enabled") or config["cluster"].get("replicas", 0) < 3:
    problems.append("config.cluster: enabled with at least 3 replicas (a JetStream quorum)")
if not config["jetstream"].get("enabled"):
    problems.append("config.jetstream.enabled: true")
if config["jetstream"].get("merge", {}).get("sync_interval") != "always":
    problems.append("config.jetstream.merge.sync_interval: always (fsync before every ack)")
if hookd["nats"]["streamReplicas"] > config["cluster"].get("replicas", 0):
    problems.append("the hookd chart's nats.streamReplicas cannot exceed the NATS servers")
if problems:
    sys.exit("deploy/nats-values.yaml must set: " + "; ".join(problems))
print(f"ok: {config['cluster']['replicas']} servers, streams at {hookd['nats']['streamReplicas']} replicas, sync_interval always")
PY

echo "deploy-check: 3 renders and the NATS values, 0 problems"
