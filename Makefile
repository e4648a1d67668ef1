# Backlot: `make run` sets up and runs Backlot on the stand-in backends; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
G3VENV := .venv-gradio3
STAMPS := .stamps
APT_PACKAGES := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libegl1 libgl1 libpulse0 desktop-file-utils
PYTEST_ARGS ?=
# The Blender releases artists run, as PyPI's bpy module builds (Python 3.11), one cached venv each.
BPY_VERSIONS := 4.2.23 4.5.15 5.0.1
BPY_STAMPS := $(foreach v,$(BPY_VERSIONS),$(STAMPS)/bpy-$(v))

.PHONY: setup system blender blenders run test clean

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

# Blender 4.2 LTS, 4.5 LTS and 5.0 for the addon's tests (about 350 MB to download and 1 GB installed each).
blenders: $(BPY_STAMPS)
$(STAMPS)/bpy-%:
	@mkdir -p $(STAMPS)
	@echo "installing Blender $* (PyPI's bpy) for the addon tests"
	rm -rf .venv-bpy-$*
	$(PYTHON) -m venv .venv-bpy-$*
	.venv-bpy-$*/bin/python -m pip install -q bpy==$*
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

# The window on the stand-ins when there is a display; without one, the same core headless.
run: setup
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
	  $(VENV)/bin/backlot demo; \
	else \
	  echo "make run: no display (\$$DISPLAY and \$$WAYLAND_DISPLAY are unset), so Backlot runs headless on the stand-ins"; \
	  $(VENV)/bin/backlot demo --headless; \
	fi

test: setup $(STAMPS)/blender $(BPY_STAMPS)
	BACKLOT_BPY_VERSIONS="$(BPY_VERSIONS)" $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(G3VENV) .venv-bpy-* $(STAMPS) .pytest_cache
