#pragma once
/*
 * The NVIDIA driver's user-space files as libnvidia-container finds them, for sandboxes whose root is an
 * image (which has no driver of its own): the libraries the dynamic linker's cache lists (`ldconfig -p`)
 * and the tools found on a search path. Only the finding is here; binding them is the image root's.
 */
#include <stddef.h>

#include "core/error.h"

/* At most this many libraries (and as many tools) are taken: the driver has about 20. */
#define LMS_GPU_DRIVER_FILES_MAX 128

/* What was found: absolute host paths, in the order the dynamic linker prefers them. */
struct lms_gpu_driver {
	char **libs;
	size_t n_libs;
	char **bins;
	size_t n_bins;
};

/* The linker cache's ABI tag of this build's machine ("x86-64", "AArch64"), or NULL where unknown. */
const char *lms_gpu_host_abi(void);

/* Reads `ldconfig -p` output (text, len bytes) and adds to drv the path of each driver library
 * (libcuda, libnvidia-ml, libnvidia-ptxjitcompiler, ...) whose entry has the given ABI tag: the first
 * entry of each soname only, as the linker takes it; relative paths and paths with ".." are ignored.
 * Lines past 4096 bytes are skipped. Pure: nothing is read but text. */
void lms_gpu_driver_libs(const char *text, size_t len, const char *abi, struct lms_gpu_driver *drv);

/* Adds to drv each driver tool (nvidia-smi, nvidia-debugdump, ...) found as an executable regular file
 * in the first directory of path_list (":"-separated absolute directories) that has it, under root. The
 * paths added are the host's (without root). */
void lms_gpu_driver_bins(const char *root, const char *path_list, struct lms_gpu_driver *drv);

/* Where an image sandbox with a GPU finds them (mount.c binds them there, exec.c puts them on the
 * command's PATH and LD_LIBRARY_PATH): a read-only tmpfs of the sandbox's own, as NVIDIA's CUDA images
 * expect (their LD_LIBRARY_PATH and PATH name these already). */
#define LMS_GPU_DRIVER_DIR "/usr/local/nvidia"
#define LMS_GPU_DRIVER_LIB_DIR LMS_GPU_DRIVER_DIR "/lib64"
#define LMS_GPU_DRIVER_BIN_DIR LMS_GPU_DRIVER_DIR "/bin"

/* This host's driver files: `ldconfig -p` run (the first of /sbin/ldconfig, /usr/sbin/ldconfig; its
 * output bounded) and parsed as above, the tools looked up on path_list (NULL: this process's PATH, else
 * the usual one). LMS_ERR_UNSUPPORTED when no driver library is found (the message says how to install
 * them); LMS_ERR_SETUP when ldconfig cannot be run. */
int lms_gpu_driver_find(const char *path_list, struct lms_gpu_driver *drv, struct lms_error **err);

void lms_gpu_driver_free(struct lms_gpu_driver *drv);
