# The Kubernetes end-to-end path (README, "Kubernetes"). Everything else is `./dev`.
#   make kind-up    a kind cluster with both images loaded and the chart installed
#   make e2e        kind-up, then `pytest -m e2e` against it
#   make kind-down  delete the cluster
# Needs docker, kind, helm and kubectl on PATH.

CLUSTER   ?= faasopt
NAMESPACE ?= faasopt
VERSION   := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/faasopt/Chart.yaml)
KUBECONFIG_FILE := $(CURDIR)/.kube/kind-$(CLUSTER)
HELM_ARGS ?= --set worker.cpu=250m

.PHONY: images kind-up e2e kind-down

images:
	docker build -f functions/Dockerfile -t faasopt/worker:$(VERSION) .
	docker build -f operator/Dockerfile -t faasopt/operator:$(VERSION) .

kind-up: images
	kind get clusters | grep -qx '$(CLUSTER)' || kind create cluster --config kind-config.yaml --name $(CLUSTER)
	mkdir -p $(dir $(KUBECONFIG_FILE))
	kind get kubeconfig --name $(CLUSTER) > $(KUBECONFIG_FILE)
	kind load docker-image --name $(CLUSTER) faasopt/worker:$(VERSION) faasopt/operator:$(VERSION)
	KUBECONFIG=$(KUBECONFIG_FILE) helm upgrade --install faasopt charts/faasopt \
		--namespace $(NAMESPACE) --create-namespace --wait --timeout 5m $(HELM_ARGS)

e2e: kind-up
	KUBECONFIG=$(KUBECONFIG_FILE) FAASOPT_E2E_NAMESPACE=$(NAMESPACE) ./dev e2e

kind-down:
	kind delete cluster --name $(CLUSTER)
	rm -f $(KUBECONFIG_FILE)
