# `make demo` and `make test` each set everything up on a fresh machine (Python 3.11) first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test browser container-tools images image-edge-encrypted demo-containers

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[train,runtime,devcerts,test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python -m pmc2.demo $(ARGS)

# The page's browser test drives Debian's Chromium through Playwright. Chromium is installed here when missing
# and apt can (root); when it cannot be, `make test` stops, naming what to install, rather than skip the test.
browser: setup
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; \
	command -v chromium >/dev/null 2>&1 || { echo "make browser: Chromium is missing and could not be installed;" \
		"install it as root (Debian: apt-get install -y chromium) and run make test again" >&2; exit 1; }
	@$(BIN)/python -c "import playwright.sync_api" 2>/dev/null || { echo "make browser: Playwright is missing from" \
		"$(VENV); install it with: $(BIN)/pip install -e '.[test]'" >&2; exit 1; }

test: setup browser container-tools
	$(BIN)/python -m pytest

# ---- Container images (deploy/Dockerfile) with podman --------------------------------------------------------------
# `make images` builds the edge and cloud images; `make image-edge-encrypted` the edge with encrypted models (key in
# build/containers/model.key); `make demo-containers` runs the phone simulator through the containers
# (python -m pmc2.bench.containers demo $(ARGS)). Each image copies the staging folder deploy/stage_models.py writes
# for its side (build/staging/edge, cloud, edge-encrypted) from a bundle: BUNDLE=<folder> (default onnx_models) for
# the edge, CLOUD_BUNDLE=<folder> (default BUNDLE) for the cloud; a fitted bundle has no target, so its cloud folder
# is python -m pmc2.fit.cloud_models's. Each image's ID is kept in build/containers/<image>.iid, which
# pmc2.bench.containers reads; an image is rebuilt when the Dockerfile, the requirements, a source file of the
# package, its staged models or its base change (podman's layer cache keeps the rest).
# The base: BASE=<image> if given; otherwise the public python:3.11-slim when its registry answers, else one made
# from the Debian archive (deploy/debian-base.sh → build/containers/base.tar, imported as localhost/pmc2-base).
# podman reads deploy/containers.conf (runc, lowered limits) in these targets.
IMAGES := build/containers
STAGING := build/staging
BUNDLE ?= onnx_models
CLOUD_BUNDLE ?= $(BUNDLE)
IMAGE_VERSION := $(shell sed -n 's/^version = //p' setup.cfg)
PUBLIC_BASE := docker.io/library/python:3.11-slim
LOCAL_BASE := localhost/pmc2-base:bookworm
BASE ?=
PIP_CA ?= $(firstword $(wildcard $(PIP_CERT) /etc/ssl/certs/ca-certificates.crt))
comma := ,
PACKAGE_DIRS := $(shell sed -n 's/^ *pmc2[a-z_.]* = \([a-z_0-9]*\)$$/\1/p' setup.cfg)
IMAGE_SOURCES := deploy/Dockerfile deploy/requirements-edge.txt .dockerignore setup.cfg pyproject.toml README.md \
	$(shell find $(PACKAGE_DIRS) -name '*.py' -o -name '*.html' 2>/dev/null)
# the stager and what it imports (runtime, the servers' model lists)
STAGING_SOURCES := deploy/stage_models.py $(shell find pmc2 runtime edge_server cloud_server serving -name '*.py' 2>/dev/null)
images image-edge-encrypted demo-containers: export CONTAINERS_CONF := $(CURDIR)/deploy/containers.conf

# podman, runc, skopeo and mmdebstrap are installed from the Debian archive when missing and apt can (root); when
# they cannot be, the targets that need them stop, naming what to install.
container-tools:
	@missing=; for tool in podman runc skopeo mmdebstrap; do \
		command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		missing=; for tool in podman runc skopeo mmdebstrap; do \
			command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$tool"; done; fi; \
	[ -z "$$missing" ] || { echo "make container-tools: missing:$$missing; install them as root" \
		"(Debian: apt-get install -y$$missing) and run make again" >&2; exit 1; }

# An image whose ID podman no longer has (storage reset, image removed) is built again.
ifneq ($(filter images image-edge-encrypted demo-containers,$(MAKECMDGOALS)),)
$(foreach stamp,$(wildcard $(IMAGES)/*.iid),$(shell CONTAINERS_CONF=$(CURDIR)/deploy/containers.conf \
	podman image exists "$$(cat $(stamp))" 2>/dev/null || rm -f $(stamp)))
endif

$(IMAGES)/base.tar: deploy/debian-base.sh | container-tools
	@mkdir -p $(@D)
	@echo "make images: making the base from the Debian archive (mmdebstrap, about half a minute)"
	deploy/debian-base.sh $@

$(IMAGES)/base.iid: $(IMAGES)/base.tar
	@podman import --quiet $< $(LOCAL_BASE) >$@

# "<base image> <its ID or digest>": rewritten only when that changes, so that a new base rebuilds the images
$(IMAGES)/base.ref: FORCE | container-tools
	@mkdir -p $(@D)
	@if [ -n "$(BASE)" ]; then ref="$(BASE) $(BASE)"; \
	elif digest=$$(timeout 30 skopeo inspect --retry-times 1 --format '{{.Digest}}' docker://$(PUBLIC_BASE) 2>/dev/null); then \
		ref="$(PUBLIC_BASE) $$digest"; \
	else echo "make images: no registry answers for $(PUBLIC_BASE); the base is made from the Debian archive"; \
		$(MAKE) --no-print-directory $(IMAGES)/base.iid && ref="$(LOCAL_BASE) $$(cat $(IMAGES)/base.iid)"; fi; \
	echo "make images: base $${ref%% *}"; \
	echo "$$ref" | cmp -s - $@ || echo "$$ref" >$@

# podman build of target $(1) tagged $(2), extra arguments $(3); the CA bundle pip trusts on this machine goes to the
# build stage as a secret (deploy/Dockerfile)
build_image = podman build --quiet --layers -f deploy/Dockerfile --target $(1) \
	--build-arg BASE=$$(cut -d' ' -f1 $(IMAGES)/base.ref) $(if $(PIP_CA),--secret id=pip-ca$(comma)src=$(PIP_CA)) $(3) \
	--iidfile $@.tmp -t $(2) . >/dev/null && mv $@.tmp $@ \
	&& echo "make images: $(2) $$(cut -c8-19 $@)"

# the bundle folder each staging folder is made from ($(STAGING)/<side>.from), rewritten only when it changes, so
# that another BUNDLE or CLOUD_BUNDLE restages whatever the files' dates
BUNDLE_OF_edge := $(abspath $(BUNDLE))
BUNDLE_OF_edge-encrypted := $(BUNDLE_OF_edge)
BUNDLE_OF_cloud := $(abspath $(CLOUD_BUNDLE))
$(STAGING)/%.from: FORCE
	@mkdir -p $(@D)
	@echo "$(BUNDLE_OF_$*)" | cmp -s - $@ || echo "$(BUNDLE_OF_$*)" >$@

# deploy/stage_models.py for side $(1) from bundle $(2) into the rule's folder, extra arguments $(3)
stage_models = [ -x $(BIN)/python ] || $(MAKE) --no-print-directory setup; \
	$(BIN)/python deploy/stage_models.py --side $(1) --models $(2) --out $(@D) $(3)

$(STAGING)/edge/manifest.json: $(STAGING)/edge.from $(STAGING_SOURCES) $(wildcard $(BUNDLE)/*.*)
	@$(call stage_models,edge,$(BUNDLE))

$(STAGING)/cloud/manifest.json: $(STAGING)/cloud.from $(STAGING_SOURCES) $(wildcard $(CLOUD_BUNDLE)/*.*)
	@$(call stage_models,cloud,$(CLOUD_BUNDLE))

$(STAGING)/edge-encrypted/manifest.json: $(STAGING)/edge-encrypted.from $(STAGING_SOURCES) $(wildcard $(BUNDLE)/*.*) \
		$(IMAGES)/model.key
	@$(call stage_models,edge,$(BUNDLE),--key-file $(IMAGES)/model.key)

$(IMAGES)/model.key:
	@mkdir -p $(@D)
	umask 077 && head -c 32 /dev/urandom >$@.tmp && mv $@.tmp $@

# the image of Dockerfile stage $(1) from staging folder $(2), tagged localhost/pmc2-$(2)
image_from_staging = $(call build_image,$(1),localhost/pmc2-$(2):$(IMAGE_VERSION),--build-arg MODELS=$(STAGING)/$(2))

$(IMAGES)/edge.iid: $(IMAGES)/base.ref $(IMAGE_SOURCES) $(STAGING)/edge/manifest.json
	@$(call image_from_staging,edge,edge)

$(IMAGES)/cloud.iid: $(IMAGES)/base.ref $(IMAGE_SOURCES) $(STAGING)/cloud/manifest.json
	@$(call image_from_staging,cloud,cloud)

$(IMAGES)/edge-encrypted.iid: $(IMAGES)/base.ref $(IMAGE_SOURCES) $(STAGING)/edge-encrypted/manifest.json
	@$(call image_from_staging,edge,edge-encrypted)

images: $(IMAGES)/edge.iid $(IMAGES)/cloud.iid

image-edge-encrypted: $(IMAGES)/edge-encrypted.iid

demo-containers: setup images
	$(BIN)/python -m pmc2.bench.containers demo $(ARGS)

FORCE:
