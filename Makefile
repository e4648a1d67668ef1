# Backlot: `make run` sets up and runs Backlot on the stand-in backends; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
G3VENV := .venv-gradio3
STAMPS := .stamps
APT_PACKAGES := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libegl1 libgl1 libpulse0
PYTEST_ARGS ?=

.PHONY: setup system blender run test clean

setup: system $(STAMPS)/venv $(STAMPS)/gradio3

# Qt's X11 plugin and Xvfb need a few Debian packages; install what is missing (needs root or sudo).
system: $(STAMPS)/system
$(STAMPS)/system:
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing system packages: $$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

# Debian's Blender (about 224 MB) runs the addon's tests; `make test` installs it, `make run` does not.
blender: $(STAMPS)/blender
$(STAMPS)/blender:
	@mkdir -p $(STAMPS)
	@if ! command -v blender >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing Blender for the addon tests"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq blender >/dev/null; \
	fi
	@touch $@

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e ".[test]"
	@touch $@

$(STAMPS)/gradio3: standins/gradio3/requirements.txt
	@mkdir -p $(STAMPS)
	$(PYTHON) -m venv $(G3VENV)
	$(G3VENV)/bin/python -m pip install -q --upgrade pip
	$(G3VENV)/bin/python -m pip install -q -r standins/gradio3/requirements.txt
	@touch $@

run: setup
	$(VENV)/bin/backlot demo --headless

test: setup $(STAMPS)/blender
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(G3VENV) $(STAMPS) .pytest_cache
