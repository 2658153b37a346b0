/* cblas_{s,d,c}gemm for mlx[cpu] on Linux, forwarded to OpenBLAS (the scipy-openblas32 wheel).
 *
 * mlx[cpu] links a renamed reference BLAS from its wheel (mlx_cpu.libs/libblas-*.so), so its
 * float32 matmuls run the textbook triple loop on one core (~3-5 GFLOP/s here, against ~150 for
 * OpenBLAS). libmlx.so imports exactly these three symbols from that library; loaded into the
 * global scope before mlx (hook.py, which install.py puts in the venv, does it), this library's
 * definitions win the symbol lookup. scipy-openblas32 prefixes its symbols (scipy_cblas_sgemm),
 * so a plain LD_PRELOAD of it would not interpose: hence this shim.
 *
 * OpenBLAS is dlopen()ed on the first call, not at load, so a Python process that never does a
 * matmul pays nothing (the .pth runs in every interpreter of the venv). If it cannot be loaded
 * the calls go to the reference BLAS that mlx already loaded: slow, never broken.
 *
 * One OpenBLAS thread unless EDGEAI_MLX_BLAS_THREADS=N says otherwise (for mlx alone: numpy's
 * OpenBLAS is another library). Measured on a 2-core VM, a LoRA step of the 0.5B model: 2 threads
 * were x1.4 faster while the other core was idle and x3-5 slower as soon as another process
 * wanted it (OpenBLAS's workers spin), while 1 thread held 7.5-8.6 s either way; and the rest of
 * an MLX step runs on one thread regardless.
 *
 * Build: cc -O2 -shared -fPIC -o libmlx_cblas.so shim.c -ldl -DOPENBLAS_PATH='"..."'
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef OPENBLAS_PATH
#error "define OPENBLAS_PATH"
#endif

typedef int I; /* LP64: scipy-openblas32 and the reference CBLAS both take 32-bit ints */
typedef void (*sgemm_t)(I, I, I, I, I, I, float, const float *, I, const float *, I, float, float *, I);
typedef void (*dgemm_t)(I, I, I, I, I, I, double, const double *, I, const double *, I, double, double *, I);
typedef void (*cgemm_t)(I, I, I, I, I, I, const void *, const void *, I, const void *, I, const void *,
                        void *, I);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static sgemm_t p_sgemm;
static dgemm_t p_dgemm;
static cgemm_t p_cgemm;

/* the reference libblas that libmlx.so loaded (in its own scope, so RTLD_NEXT cannot see it):
 * mlx_cpu.libs/libblas-<hash>.so.3 (the CUDA wheels vendor the same one in their own .libs) */
static int find_reference(struct dl_phdr_info *info, size_t size, void *out) {
  (void)size;
  const char *libs = info->dlpi_name ? strstr(info->dlpi_name, "/mlx_") : NULL;
  if (libs && strstr(libs, ".libs/libblas")) {
    *(void **)out = dlopen(info->dlpi_name, RTLD_NOW | RTLD_NOLOAD);
    return *(void **)out != NULL;
  }
  return 0;
}

static void resolve(void) {
  void *lib = dlopen(OPENBLAS_PATH, RTLD_NOW | RTLD_LOCAL);
  const char *prefix = "scipy_";
  if (lib == NULL) {
    fprintf(stderr, "edgeai mlx BLAS: %s; using mlx's reference BLAS\n", dlerror());
    dl_iterate_phdr(find_reference, &lib);
    prefix = "";
  }
  if (lib == NULL) {
    fprintf(stderr, "edgeai mlx BLAS: neither OpenBLAS nor mlx's reference BLAS found\n");
    abort();
  }
  char name[64];
  snprintf(name, sizeof name, "%scblas_sgemm", prefix);
  p_sgemm = (sgemm_t)dlsym(lib, name);
  snprintf(name, sizeof name, "%scblas_dgemm", prefix);
  p_dgemm = (dgemm_t)dlsym(lib, name);
  snprintf(name, sizeof name, "%scblas_cgemm", prefix);
  p_cgemm = (cgemm_t)dlsym(lib, name);
  if (!p_sgemm || !p_dgemm || !p_cgemm) {
    fprintf(stderr, "edgeai mlx BLAS: %s lacks the cblas gemm symbols\n", OPENBLAS_PATH);
    abort();
  }
  const char *env = getenv("EDGEAI_MLX_BLAS_THREADS");
  int threads = env && atoi(env) > 0 ? atoi(env) : 1;
  void (*set_threads)(int) = *prefix ? (void (*)(int))dlsym(lib, "scipy_openblas_set_num_threads") : NULL;
  if (set_threads)
    set_threads(threads);
}

void cblas_sgemm(I o, I ta, I tb, I m, I n, I k, float al, const float *a, I lda, const float *b, I ldb,
                 float be, float *c, I ldc) {
  pthread_once(&once, resolve);
  p_sgemm(o, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc);
}

void cblas_dgemm(I o, I ta, I tb, I m, I n, I k, double al, const double *a, I lda, const double *b, I ldb,
                 double be, double *c, I ldc) {
  pthread_once(&once, resolve);
  p_dgemm(o, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc);
}

void cblas_cgemm(I o, I ta, I tb, I m, I n, I k, const void *al, const void *a, I lda, const void *b, I ldb,
                 const void *be, void *c, I ldc) {
  pthread_once(&once, resolve);
  p_cgemm(o, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc);
}
