/* emit.c: from the LLVM module to files: LLVM IR, assembly, an object file,
 * a self-contained shared library, or a C header declaring the model's entry
 * points.
 *
 * The shared library is the object linked with the system C compiler driver
 * (`cc -shared`, or $CC) against libq8support.a, the reference ops the model
 * calls for layers without a generated kernel; so a model .so needs nothing
 * but libc and libm. The support library is found through $Q8_SUPPORT_LIB,
 * beside the q8c executable, or in the build tree q8c was built in.
 *
 * AArch64 variants are cross-compiled: LLVM's AArch64 target writes the
 * object, Debian's cross driver (aarch64-linux-gnu-gcc, or $Q8_CC_AARCH64)
 * links it against an aarch64 libq8support.a ($Q8_SUPPORT_LIB_AARCH64,
 * aarch64/ beside q8c, or the build tree's aarch64/). The variants of one
 * library share an architecture (cg_parse_targets checks), whose CgArch
 * (isa.c) names the triple, the driver and the library. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen.h"

extern char **environ;

static void init_llvm_targets(void) {
  for (int a = 0; a < CG_ARCH_COUNT; a++)
    cg_arch_info[a].init_llvm();
  LLVMInitializeNativeTarget(); /* for the JIT; the host's target is one of the above */
  LLVMInitializeNativeAsmPrinter();
}

void cg_init_llvm(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_llvm_targets);
}

#ifndef Q8_SUPPORT_LIB_INSTALLED
#define Q8_SUPPORT_LIB_INSTALLED "../lib/q8c"
#endif

/* The architecture of the variants in `o` (all share one). */
static const CgArch *arch_of(const CgOptions *o) {
  return o->nisas > 0 ? cg_arch_of(o->isas[0]) : &cg_arch_info[cg_host_arch()];
}

static const char *triple_for(const CgOptions *o) { return arch_of(o)->triple; }

/* A target machine for the module: baseline CPU, position-independent code;
 * each function carries its variant's features itself. `large`: x86-64's
 * medium code model, whose large data (.lrodata) is reached through 64-bit
 * offsets, for a module whose constants the small model's +-2 GiB cannot
 * reach (LARGE_DATA). */
static LLVMTargetMachineRef target_machine(IrModule *m, const CgOptions *o, bool large) {
  cg_init_llvm();
  LLVMTargetRef target;
  char *msg = NULL;
  const char *triple = triple_for(o);
  if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
    ir_error(&m->diag, (IrLoc){0}, "codegen: no LLVM target for %s: %s", triple, msg);
    LLVMDisposeMessage(msg);
    return NULL;
  }
  LLVMCodeGenOptLevel level = o->opt_level <= 0   ? LLVMCodeGenLevelNone
                              : o->opt_level == 1 ? LLVMCodeGenLevelLess
                              : o->opt_level == 2 ? LLVMCodeGenLevelDefault
                                                  : LLVMCodeGenLevelAggressive;
  return LLVMCreateTargetMachine(target, triple, arch_of(o)->cpu, "", level, LLVMRelocPIC,
                                 large ? LLVMCodeModelMedium : LLVMCodeModelDefault);
}

/* Past 1 GiB of constants in the module, x86-64 code takes the medium code
 * model: a library whose weights stay in it (4-bit and f32 weights, which
 * the weights file does not take, or int8 ones without --weights-out in the
 * API) links and runs past the small model's 2 GiB reach. Below it, the
 * code is what it always was. */
#define LARGE_DATA ((uint64_t)1 << 30)

/* The bytes of the module's global variables' initializers. */
static uint64_t global_bytes(LLVMModuleRef mod) {
  LLVMTargetDataRef dl = LLVMGetModuleDataLayout(mod);
  uint64_t n = 0;
  for (LLVMValueRef g = LLVMGetFirstGlobal(mod); g; g = LLVMGetNextGlobal(g))
    if (!LLVMIsDeclaration(g))
      n += LLVMABISizeOfType(dl, LLVMGlobalGetValueType(g));
  return n;
}

/* Run LLVM's standard optimisation pipeline at -O<level>. */
static bool optimize(IrModule *m, LLVMModuleRef mod, LLVMTargetMachineRef tm, int level) {
  char passes[32];
  snprintf(passes, sizeof passes, "default<O%d>", level < 0 ? 0 : level > 3 ? 3 : level);
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(mod, passes, tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  if (e) {
    char *msg = LLVMGetErrorMessage(e);
    ir_error(&m->diag, (IrLoc){0}, "codegen: optimisation failed: %s", msg);
    LLVMDisposeErrorMessage(msg);
    return false;
  }
  return true;
}

/* Build and optimise the module for `m`; the caller disposes of both. */
static LLVMModuleRef compile(IrModule *m, const CgOptions *o, LLVMContextRef ctx,
                             LLVMTargetMachineRef *tm_out) {
  cg_init_llvm();
  LLVMModuleRef mod = cg_build_module(m, ctx, o);
  if (!mod)
    return NULL;
  bool large = arch_of(o) == &cg_arch_info[CG_ARCH_X86_64] && global_bytes(mod) > LARGE_DATA;
  LLVMTargetMachineRef tm = target_machine(m, o, large);
  if (!tm) {
    LLVMDisposeModule(mod);
    return NULL;
  }
  if (!optimize(m, mod, tm, o->opt_level)) {
    if (mod)
      LLVMDisposeModule(mod);
    LLVMDisposeTargetMachine(tm);
    return NULL;
  }
  LLVMSetTarget(mod, triple_for(o));
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(mod, dl);
  LLVMDisposeTargetData(dl);
  *tm_out = tm;
  return mod;
}

static bool emit_machine_code(IrModule *m, LLVMTargetMachineRef tm, LLVMModuleRef mod,
                              LLVMCodeGenFileType kind, const char *path) {
  char *msg = NULL;
  if (LLVMTargetMachineEmitToFile(tm, mod, path, kind, &msg)) {
    ir_error(&m->diag, (IrLoc){0}, "codegen: cannot write %s: %s", path, msg);
    LLVMDisposeMessage(msg);
    return false;
  }
  return true;
}

/* ---- linking ---- */

static bool file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *support_lib(const CgArch *a, char *buf, size_t size) {
  const char *env = getenv(a->lib_env);
  if (env && *env)
    return env;
  ssize_t n = readlink("/proc/self/exe", buf, size - 64);
  if (n > 0) {
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    /* Beside q8c (a build tree), then where `cmake --install` puts it
     * relative to q8c (bin/../lib/q8c). */
    const char *dirs[] = {"", Q8_SUPPORT_LIB_INSTALLED "/"};
    for (size_t i = 0; slash && i < sizeof dirs / sizeof dirs[0]; i++) {
      if ((size_t)(slash + 1 - buf) + strlen(dirs[i]) + strlen(a->lib_beside) + 1 > size)
        break;
      snprintf(slash + 1, size - (size_t)(slash + 1 - buf), "%s%s", dirs[i], a->lib_beside);
      if (file_exists(buf))
        return buf;
    }
  }
  if (a->lib_build && file_exists(a->lib_build))
    return a->lib_build;
  return NULL;
}

/* Run argv, its output going to our stderr; the exit status, or -1 with
 * errno when it could not be started. */
static int run_command(char *const argv[]) {
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static bool link_shared(IrModule *m, const CgOptions *o, const char *obj, const char *out) {
  const CgArch *a = arch_of(o);
  char buf[4096];
  const char *support = support_lib(a, buf, sizeof buf);
  if (!support && !a->cross)
    return ir_error(&m->diag, (IrLoc){0},
                    "cannot find libq8support.a to link %s: set %s to its path", out, a->lib_env);
  if (!support)
    return ir_error(&m->diag, (IrLoc){0},
                    "cannot find the %s libq8support.a to link %s: set %s to its path (a build "
                    "of q8c with %s installed makes one in %s)",
                    a->name, out, a->lib_env, a->cc_package, a->lib_beside);
  const char *cc = getenv(a->cc_env);
  if (!cc || !*cc)
    cc = a->cc;
  char *argv[] = {(char *)cc, "-shared", "-o", (char *)out, (char *)obj, (char *)support,
                  "-lm",      NULL};
  int rc = run_command(argv);
  if (rc < 0)
    return ir_error(&m->diag, (IrLoc){0},
                    "cannot run the C compiler '%s' to link %s: %s (install %s, or set %s)", cc,
                    out, strerror(errno), a->cc_package, a->cc_env);
  if (rc != 0)
    return ir_error(&m->diag, (IrLoc){0}, "linking %s with '%s -shared' failed (exit status %d)",
                    out, cc, rc);
  return true;
}

/* ---- the C header ---- */

static bool write_header(IrModule *m, const CgOptions *o, const char *path) {
  char prefix[128];
  size_t n = 0;
  for (const char *s = m->name; *s && n + 1 < sizeof prefix; s++)
    prefix[n++] = (char)((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                                 (*s >= '0' && *s <= '9')
                             ? *s
                             : '_');
  prefix[n] = '\0';
  FILE *f = fopen(path, "w");
  if (!f)
    return ir_error(&m->diag, (IrLoc){0}, "cannot write %s: %s", path, strerror(errno));
  fprintf(f, "/* %s: the entry points of model '%s', compiled by q8c %s.\n", path, m->name,
          Q8_VERSION);
  fprintf(f, " *\n * Link the model's .so and call one entry point with the inputs and outputs\n"
             " * below (dense, row-major) and a scratch buffer of %s_SCRATCH_BYTES bytes\n"
             " * aligned to 64; pass NULL for threads to run on the calling thread. The\n"
             " * _run_quantized_ entries take and give the quantized form noted below instead\n"
             " * of f32 (docs/quantization.md, \"The quantized boundary\"). Use the\n"
             " * entry point of a variant this CPU supports (or load the model with libq8rt,\n"
             " * which checks and chooses for you). */\n",
          prefix);
  fprintf(f, "#ifndef Q8_MODEL_%s_H\n#define Q8_MODEL_%s_H\n\n#include <q8model.h>\n\n", prefix,
          prefix);
  for (int i = 0; i < m->ninputs + m->noutputs; i++) {
    const IrValue *v = i < m->ninputs ? m->inputs[i] : m->outputs[i - m->ninputs];
    char t[128];
    IrType bound = ir_type_bind(&v->type, o->batch > 0 ? o->batch : 1);
    fprintf(f, "/* %s %d: %%%s : %s", i < m->ninputs ? "input" : "output",
            i < m->ninputs ? i : i - m->ninputs, v->name, ir_type_str(&bound, t, sizeof t));
    if (v->has_qform) {
      char num[40];
      ir_format_double(v->qform.scale, num, sizeof num);
      fprintf(f, "; quantized entry: %s, real = (q - %d) * %s", ir_dtype_name(v->qform.dtype),
              (int)v->qform.zero_point, num);
    }
    fprintf(f, " */\n");
  }
  fprintf(f, "\nextern const q8_model_desc q8_model;\n");
  fprintf(f, "#define %s_SCRATCH_BYTES (q8_model.scratch_bytes)\n", prefix);
  /* A run-time batch: scratch_bytes is at batch 1, each further row adds
   * this; the entries' last argument is the batch (ignored by a fixed-shape
   * model). */
  fprintf(f, "#define %s_SCRATCH_BYTES_PER_BATCH (q8_model.scratch_bytes_per_batch)\n\n", prefix);
  for (int i = 0; i < o->nisas; i++)
    for (int q = 0; q < 2; q++)
      fprintf(f,
              "/* needs: %s%s */\nint %s_run_%s%s(const q8_threads *threads, "
              "const void *const *inputs,\n    void *const *outputs, void *scratch, int64_t batch);\n",
              cg_isa_info[o->isas[i]].features[0] ? cg_isa_info[o->isas[i]].features : "x86-64",
              q ? "; inputs and outputs in their quantized form where they have one" : "",
              prefix, q ? "quantized_" : "", cg_isa_info[o->isas[i]].name);
  fprintf(f, "\n#endif\n");
  if (fclose(f) != 0)
    return ir_error(&m->diag, (IrLoc){0}, "cannot write %s: %s", path, strerror(errno));
  return true;
}

LLVMModuleRef cg_build_optimized(IrModule *m, const CgOptions *o, LLVMContextRef ctx) {
  LLVMTargetMachineRef tm = NULL;
  LLVMModuleRef mod = compile(m, o, ctx, &tm);
  if (tm)
    LLVMDisposeTargetMachine(tm);
  return mod;
}

bool cg_compile_to_file(IrModule *m, const CgOptions *o, CgEmit emit, const char *path) {
  if (emit == CG_EMIT_HEADER)
    return write_header(m, o, path);
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMTargetMachineRef tm = NULL;
  LLVMModuleRef mod = compile(m, o, ctx, &tm);
  bool ok = mod != NULL;
  if (ok && emit == CG_EMIT_LLVM) {
    char *msg = NULL;
    if (LLVMPrintModuleToFile(mod, path, &msg)) {
      ok = ir_error(&m->diag, (IrLoc){0}, "cannot write %s: %s", path, msg);
      LLVMDisposeMessage(msg);
    }
  } else if (ok && emit == CG_EMIT_ASM) {
    ok = emit_machine_code(m, tm, mod, LLVMAssemblyFile, path);
  } else if (ok && emit == CG_EMIT_OBJ) {
    ok = emit_machine_code(m, tm, mod, LLVMObjectFile, path);
  } else if (ok && emit == CG_EMIT_SO) {
    /* No suffix: the C compiler driver takes such a file as an object. */
    char obj[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(obj, sizeof obj, "%s/q8c-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(obj);
    if (fd < 0) {
      ok = ir_error(&m->diag, (IrLoc){0}, "cannot create a temporary file: %s", strerror(errno));
    } else {
      close(fd);
      ok = emit_machine_code(m, tm, mod, LLVMObjectFile, obj) && link_shared(m, o, obj, path);
      unlink(obj);
    }
  }
  if (mod)
    LLVMDisposeModule(mod);
  if (tm)
    LLVMDisposeTargetMachine(tm);
  LLVMContextDispose(ctx);
  return ok;
}
