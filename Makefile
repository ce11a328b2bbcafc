# BHViT -> FPGA: entry points.  Every target sets up .venv first (idempotent).
PY      := .venv/bin/python
MODEL   ?= bhvit_pynq_fmnist
# CONFIG=my_model.json (or .yaml): a model configuration of your own instead of a registered MODEL;
# the run, its teacher and its checkpoint are named after the file
CONFIG  ?=
MODEL_NAME := $(if $(CONFIG),$(basename $(notdir $(CONFIG))),$(MODEL))
MODEL_ARG := $(if $(CONFIG),--config $(CONFIG),--model $(MODEL))
DATA    ?= fmnist
DATA_DIR ?=
EPOCHS  ?= 14
BATCH   ?= 256
LR      ?= 2e-3
LOSS    ?= paper
SEED    ?= 0
NPROC   ?= 1
OUT     ?= runs/$(MODEL_NAME)
# The full-precision teacher: same network in float, trained first by `make train`.
TEACHER_MODEL  ?= $(MODEL)_fp
TEACHER_ARG := $(if $(CONFIG),--config $(CONFIG) --fp,--model $(TEACHER_MODEL))
TEACHER_EPOCHS ?= 5
TEACHER ?= runs/$(if $(CONFIG),$(MODEL_NAME)_fp,$(TEACHER_MODEL))/last.pt
CKPT    ?= checkpoints/bhvit_pynq_fmnist/model.pt
TRAIN_ARGS ?=
# torch.compile for training steps: ~1.8x faster on this CPU after a few minutes of compiling.
COMPILE ?= 1
# ACT_BITS=N keeps the residual stream at N bits; unset, the fold starts at 10 and widens where the
# model loses more than a point of top-1 (hw/formats.py)
ACT_BITS ?=
GOLDEN_ARGS ?=
EXPORT_ARGS ?=
BOARD   ?= pynq-z2
HLS_ARGS ?=
SIM_ARGS ?=
# pytest-xdist workers of `make test` (the CI machine has 2 cores)
TEST_JOBS ?= 2
# The checkpoint the hw flows (golden, qat, export, hls, sim, bitstream) and eval take: CKPT when
# given; with CONFIG=x.json the run `make train CONFIG=x.json` wrote (runs/x/last.pt); with MODEL=x
# checkpoints/x/model.pt; else the shipped model
HLS_CKPT := $(if $(filter command line environment,$(origin CKPT)),$(CKPT),$(if $(CONFIG),runs/$(MODEL_NAME)/last.pt,$(if $(filter command line environment,$(origin MODEL)),checkpoints/$(MODEL)/model.pt,$(CKPT))))
QAT_ARGS ?=
DATA_ARG := $(if $(DATA_DIR),--data-dir $(DATA_DIR),)
# the hw flows take the checkpoint's data set (and folder) unless DATA / DATA_DIR are given
HW_ARGS := $(if $(ACT_BITS),--act-bits $(ACT_BITS),) $(if $(filter command line environment,$(origin DATA)),--data $(DATA),) $(DATA_ARG)
ifeq ($(NPROC),1)
  LAUNCH := $(PY) -m model.train
else
  LAUNCH := $(PY) -m torch.distributed.run --nproc_per_node=$(NPROC) $(TORCHRUN_ARGS) -m model.train
endif

.PHONY: setup train eval ship golden qat export hls sim test demo benchmark clean help
help:
	@echo "make demo      set-up, a short training, evaluation, and the dataflow export of the shipped model"
	@echo "make train     MODEL=$(MODEL) | CONFIG=my_model.json  DATA=$(DATA) EPOCHS=$(EPOCHS) [NPROC=N] [TEACHER=none]"
	@echo "make eval      CKPT=$(CKPT) DATA=$(DATA)"
	@echo "make golden    CKPT=$(CKPT) [ACT_BITS=N]: fold into the integer (golden) model, float vs integer top-1"
	@echo "make qat       CKPT=$(CKPT): fine-tune the integer network through its hardware-exact PyTorch form"
	@echo "make export    CKPT=$(CKPT): FINN-form dataflow ONNX graph, verified bit-exact against golden, + cost report"
	@echo "make hls       BOARD=$(BOARD) [MODEL=...] [HLS_ARGS=...]: HLS project (C++, Vitis HLS + Vivado Tcl), C simulation vs golden"
	@echo "make sim       BOARD=$(BOARD) [MODEL=...] [SIM_ARGS=...]: whole design in Verilator vs golden, measured cycles, Yosys resources"
	@echo "make bitstream BOARD=$(BOARD) [BACKEND=hls|rtl] [BITSTREAM_ARGS=...]: Vitis HLS / Vivado to a .bit + deploy bundle (needs Vivado)"
	@echo "make deploy    BOARD=$(BOARD) PYNQ_HOST=user@host: copy the bundle to the board, validate it there, fetch the results"
	@echo "make test      the test suite, golden comparisons against C / RTL simulation included (pytest tests/ --golden)"

setup:
	@bash tools/setup.sh

# Teacher first (skipped when TEACHER=none or when it has finished), then the binary student.
train: setup
ifneq ($(TEACHER),none)
	@if $(PY) -m model.status $(TEACHER) $(TEACHER_EPOCHS); then echo "[make] teacher $(TEACHER) already trained"; \
	else $(LAUNCH) $(TEACHER_ARG) --data $(DATA) $(DATA_ARG) --epochs $(TEACHER_EPOCHS) \
	     --batch-size $(BATCH) --lr $(LR) --seed $(SEED) --out $(dir $(TEACHER)) --compile $(COMPILE) $(TRAIN_ARGS); fi
	$(LAUNCH) $(MODEL_ARG) --data $(DATA) $(DATA_ARG) --epochs $(EPOCHS) --batch-size $(BATCH) \
	  --lr $(LR) --loss $(LOSS) --seed $(SEED) --out $(OUT) --teacher $(TEACHER) --compile $(COMPILE) $(TRAIN_ARGS)
else
	$(LAUNCH) $(MODEL_ARG) --data $(DATA) $(DATA_ARG) --epochs $(EPOCHS) --batch-size $(BATCH) \
	  --lr $(LR) --loss $(LOSS) --seed $(SEED) --out $(OUT) --compile $(COMPILE) $(TRAIN_ARGS)
endif

ship: setup
	$(PY) -m model.ship --run $(OUT) --teacher-run $(dir $(TEACHER)) --dest checkpoints/$(MODEL_NAME)

eval: setup
	$(PY) -m model.evaluate --ckpt $(HLS_CKPT) --data $(DATA) $(DATA_ARG)

golden: setup
	$(PY) -m hw.golden --ckpt $(HLS_CKPT) $(HW_ARGS) $(GOLDEN_ARGS)

qat: setup
	$(PY) -m hw.qat --ckpt $(HLS_CKPT) $(HW_ARGS) $(QAT_ARGS)

export: setup
	$(PY) -m hw.export --ckpt $(HLS_CKPT) $(HW_ARGS) $(EXPORT_ARGS)

hls: setup
	$(PY) -m flows.hls --board $(BOARD) --ckpt $(HLS_CKPT) $(HW_ARGS) $(HLS_ARGS)

sim: setup
	$(PY) -m flows.sim --board $(BOARD) --ckpt $(HLS_CKPT) $(HW_ARGS) $(SIM_ARGS)

test: setup
	$(PY) -m pytest tests/ --golden -q --durations=10 -n $(TEST_JOBS) --dist loadgroup

demo: setup
	$(MAKE) train EPOCHS=1 TEACHER_EPOCHS=1 OUT=runs/demo TEACHER=runs/demo_teacher/last.pt COMPILE=0 \
	  TRAIN_ARGS="--limit-steps 20 --eval-limit 1000"
	$(MAKE) eval CKPT=checkpoints/bhvit_pynq_fmnist/model.pt
	$(MAKE) export CKPT=checkpoints/bhvit_pynq_fmnist/model.pt EXPORT_ARGS="--verify 50 --limit 1000"

benchmark: setup
	$(PY) benchmarks/train_throughput.py $(MODEL_ARG) --batch-size $(BATCH)

clean:
	rm -rf build runs .pytest_cache

# ---- deployment on PYNQ (flows/bitstream.py, flows/deploy.py; flows/README.md)
BACKEND ?= hls
BITSTREAM_ARGS ?=
PYNQ_HOST ?=
DEPLOY_ARGS ?=
.PHONY: bitstream deploy
bitstream: setup
	$(PY) -m flows.bitstream --board $(BOARD) --backend $(BACKEND) --ckpt $(HLS_CKPT) $(HW_ARGS) $(BITSTREAM_ARGS)

deploy: setup
	$(PY) -m flows.deploy --board $(BOARD) --model $(MODEL_NAME) --host "$(PYNQ_HOST)" $(DEPLOY_ARGS)
