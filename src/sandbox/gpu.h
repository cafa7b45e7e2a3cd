#pragma once
/*
 * NVIDIA GPUs as this host shows them, and the driver's user-space files, for GPU passthrough
 * (DESIGN.md "GPU passthrough"). Everything takes the root it looks under ("/" in use, a fake tree in
 * the tests) or the text it reads, so that it is tested without a GPU.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* GPU indices and device minors are 0..63: a selection is a 64-bit mask (bit N: index N). */
#define LMS_GPU_MAX 64
/* A selection of every GPU the host has (`gpu: true`, `--gpu`, `--gpu all`). */
#define LMS_GPU_ALL UINT64_MAX

struct lms_gpu {
	unsigned index;	    /* position in PCI bus order: nvidia-smi's and CUDA's (PCI_BUS_ID) index */
	unsigned minor;	    /* its device node is /dev/nvidia<minor> */
	char name[96];	    /* "NVIDIA H200"; "" where the driver's /proc file is not there */
	char uuid[64];	    /* "GPU-…" or "" */
	char bus[32];	    /* PCI bus location "0000:17:00.0" or "" */
	uint64_t memory_mb; /* 0: not findable (the driver's /proc and /sys files do not say it) */
};

struct lms_gpus {
	bool control; /* /dev/nvidiactl exists: without it no GPU can be used */
	size_t count;
	struct lms_gpu gpu[LMS_GPU_MAX];
};

/* Lists the GPUs under root: every /dev/nvidiaN character device, named and ordered by the driver's
 * /proc/driver/nvidia/gpus/<bus>/information where it has one (a GPU whose /proc entry has no device
 * node is not usable here and is left out), else ordered by minor. A missing /dev or /proc is no GPU;
 * other errors are LMS_ERR_SETUP naming the path. */
int lms_gpu_discover(const char *root, struct lms_gpus *out, struct lms_error **err);

/* Reads one information file's text: "Model", "GPU UUID", "Bus Location" and "Device Minor" into
 * gpu (index and memory untouched). false when it has no valid "Device Minor". */
bool lms_gpu_parse_information(const char *text, struct lms_gpu *gpu);

/* The device minors of a selection (LMS_GPU_ALL: every GPU), or LMS_ERR_UNSUPPORTED naming what is
 * missing: no GPU at all, or the indices the host does not have (and those it has). */
int lms_gpu_select(const struct lms_gpus *gpus, uint64_t want, uint64_t *minors, struct lms_error **err);

/* Whether /dev/<name> goes into a sandbox given the selected minors: the control nodes (nvidiactl,
 * nvidia-uvm, nvidia-uvm-tools, nvidia-modeset), the nvidia-caps folder and the selected nvidiaN. */
bool lms_gpu_node_wanted(const char *name, uint64_t minors);

/* "0, 1" for a mask, into buf (for messages). */
void lms_gpu_mask_format(uint64_t mask, char *buf, size_t size);
