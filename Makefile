# loralab — make targets users know. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml
exp ?=
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help setup demo run-local logs-local db-list test test-v lint bench mlflow-ui clean \
	serve predict-health predict-text predict-positive predict-negative start-services stop-services ui \
	monitoring docker-build compose-up compose-down k8s-quick-deploy k8s-port-forward k8s-template

help: ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-17s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: 2.13.0 is a CPU build on our machines; a looser range pulls CUDA (GBs)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,deploy]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install loralab with its dev tools

demo: setup ## fine-tune the default model on the English sample, then predict two texts
	$(BIN)/loralab train $(CONFIG)
	$(BIN)/loralab predict --run latest "An absolute delight from start to finish, I loved it." \
		"Broke after two days and support never answered. Avoid."
	@echo "Open the MLflow UI: make mlflow-ui   (then http://127.0.0.1:5000)"

run-local: setup ## train any recipe: make run-local CONFIG=configs/roberta-base.yaml ARGS='epochs=1'
	$(BIN)/loralab train $(CONFIG) $(ARGS)

logs-local: ## show the log of the newest run (or RUN=<id>)
	@f=$$(ls -t results/*/$${RUN:-*}/logs.txt 2>/dev/null | head -1); \
	if [ -z "$$f" ]; then echo "no runs yet: make demo"; else echo "== $$f"; cat "$$f"; fi

db-list: setup ## experiments and runs with their key metrics
	$(BIN)/loralab runs list $(if $(exp),--experiment $(exp),)

serve: setup ## prediction service on :8000 (Production of the newest model; exp=NAME for one experiment)
	$(BIN)/loralab serve $(if $(exp),--experiment $(exp),)

predict-health: ## ask the running service (make serve) what it serves
	$(BIN)/loralab client health

predict-text: ## classify a text with the running service: make predict-text text='Great!'
	@if [ -z "$(text)" ]; then echo "usage: make predict-text text='Great film!'"; exit 2; fi
	$(BIN)/loralab client predict "$$LORALAB_TEXT"
predict-text: export LORALAB_TEXT = $(text)

predict-positive: ## classify a clearly positive sentence
	$(BIN)/loralab client predict "An absolute delight from start to finish, I loved it."

predict-negative: ## classify a clearly negative sentence
	$(BIN)/loralab client predict "Broke after two days and support never answered. Avoid."

start-services: setup ## Redis (if none runs), MLflow server, a worker, the API (:8080) and the web UI (:8501)
	deploy/local/services.sh start

ui: setup ## web UI on http://127.0.0.1:8501 (needs the API: make start-services, or API=URL)
	$(BIN)/streamlit run src/loralab/entrypoints/ui/app.py --server.address 127.0.0.1 \
		--server.port 8501 --server.headless true --browser.gatherUsageStats false \
		-- --api-url $(or $(API),http://127.0.0.1:8080)

stop-services: ## stop what start-services started
	deploy/local/services.sh stop

monitoring: ## Prometheus on :9090 against start-services (deploy/monitoring; Ctrl-C stops it)
	@command -v prometheus >/dev/null || { echo "prometheus is not installed: sudo apt-get install prometheus (or see README, Monitoring)"; exit 2; }
	mkdir -p results/prometheus
	prometheus --config.file=deploy/monitoring/prometheus/prometheus.yml \
		--storage.tsdb.path=results/prometheus --web.listen-address=127.0.0.1:9090

# Deployment (docs/deploy.md): images, the compose stack, the Helm chart
IMAGE ?= loralab:dev
CUDA_IMAGE ?= loralab-cuda:dev
COMPOSE ?= docker compose
COMPOSE_FILE := deploy/compose/compose.yaml
HELM ?= helm
RELEASE ?= loralab
NAMESPACE ?= loralab
CHART := charts/finetune-platform
VALUES ?= $(CHART)/values.yaml

docker-build: ## build the CPU image and its CUDA variant (needs a container engine)
	docker build -t $(IMAGE) .
	docker build --build-arg TORCH_VARIANT=cu128 -t $(CUDA_IMAGE) .

compose-up: ## the platform in containers on this host (deploy/compose/.env first: docs/deploy.md)
	@test -f deploy/compose/.env || { echo "cp deploy/compose/env.example deploy/compose/.env, then set its secrets"; exit 2; }
	$(COMPOSE) -f $(COMPOSE_FILE) up -d --build

compose-down: ## stop the compose stack (volumes are kept; ARGS=-v removes them)
	$(COMPOSE) -f $(COMPOSE_FILE) down $(ARGS)

k8s-quick-deploy: ## helm upgrade --install with values.yaml into NAMESPACE, waiting for the rollout
	$(HELM) upgrade --install $(RELEASE) $(CHART) --namespace $(NAMESPACE) --create-namespace \
		-f $(VALUES) --wait --timeout 10m
	kubectl -n $(NAMESPACE) rollout status deployment -l app.kubernetes.io/instance=$(RELEASE) --timeout 10m

k8s-port-forward: ## API on :8080 and web UI on :8501 from the cluster (Ctrl-C stops both)
	@trap 'kill 0' INT TERM EXIT; \
	kubectl -n $(NAMESPACE) port-forward svc/$(RELEASE)-finetune-platform-api 8080:8080 & \
	kubectl -n $(NAMESPACE) port-forward svc/$(RELEASE)-finetune-platform-ui 8501:8501 & \
	wait

k8s-template: ## print the rendered chart, no cluster needed (VALUES=charts/finetune-platform/values.prod.yaml)
	@$(HELM) template $(RELEASE) $(CHART) --namespace $(NAMESPACE) -f $(VALUES)

mlflow-ui: setup ## MLflow UI on the embedded tracking store (http://127.0.0.1:5000)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/results/mlflow.db --port 5000

test: setup ## the test suite (fast + slow; CI runs this)
	$(BIN)/python -m pytest -q

test-v: setup ## the test suite, verbose
	$(BIN)/python -m pytest -v

lint: setup ## ruff, mypy and the import-direction contracts
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup ## benchmarks on SST-2 (DATA=../shared/data/sst2)
	$(BIN)/python bench/train_throughput.py --data $${DATA:-../shared/data/sst2}

clean: ## remove results and caches (keeps .venv)
	rm -rf results .pytest_cache .mypy_cache .ruff_cache
