/* elf.c: a look at a model file before dlopen sees it.
 *
 * dlopen's own messages for a file that is not a library are terse ("invalid
 * ELF header", "cannot read file data"), and a library cut short after its
 * headers is worse than a message: its segments are mapped past the end of
 * the file, and touching them raises SIGBUS. So the runtime opens the file
 * first and checks that it is an ELF shared library whose program headers,
 * loadable segments and section headers all lie inside the file (the section
 * headers come last, so any truncation of a normally linked library shows).
 * A foreign ELF class or machine is left to dlopen, which names it. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#if UINTPTR_MAX > 0xffffffffu
typedef Elf64_Ehdr Ehdr;
typedef Elf64_Phdr Phdr;
#define NATIVE_CLASS ELFCLASS64
#else
typedef Elf32_Ehdr Ehdr;
typedef Elf32_Phdr Phdr;
#define NATIVE_CLASS ELFCLASS32
#endif

static q8rt_status truncated(const char *path, uint64_t size, uint64_t need, char *err,
                             size_t errlen) {
  return q8rt_fail(Q8RT_ERR_LOAD, err, errlen,
                   "cannot load '%s': the file is truncated (%llu bytes; its headers need %llu)",
                   path, (unsigned long long)size, (unsigned long long)need);
}

static q8rt_status check_headers(int fd, const char *path, uint64_t size, char *err,
                                 size_t errlen) {
  unsigned char ident[EI_NIDENT];
  ssize_t got = pread(fd, ident, sizeof ident, 0);
  if (got < 0)
    return q8rt_fail(Q8RT_ERR_LOAD, err, errlen, "cannot read '%s': %s", path, strerror(errno));
  if (got < SELFMAG || memcmp(ident, ELFMAG, SELFMAG) != 0)
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                     "not a q8c model: '%s' is not a shared library (no ELF header)", path);
  if (got < EI_NIDENT || ident[EI_CLASS] != NATIVE_CLASS)
    return Q8RT_OK; /* dlopen will say what is wrong */
  Ehdr eh;
  if (size < sizeof eh || pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh)
    return truncated(path, size, sizeof eh, err, errlen);
  if (eh.e_type != ET_DYN)
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                     "not a q8c model: '%s' is an ELF file but not a shared library", path);
  uint64_t need = (uint64_t)eh.e_phoff + (uint64_t)eh.e_phnum * eh.e_phentsize;
  if (need > size)
    return truncated(path, size, need, err, errlen);
  if (eh.e_shoff != 0) {
    uint64_t sh = (uint64_t)eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize;
    if (sh > need)
      need = sh;
  }
  if (eh.e_phentsize == sizeof(Phdr)) {
    for (int i = 0; i < eh.e_phnum; i++) {
      Phdr ph;
      if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) !=
          (ssize_t)sizeof ph)
        return truncated(path, size, need, err, errlen);
      if (ph.p_type == PT_LOAD && (uint64_t)ph.p_offset + ph.p_filesz > need)
        need = (uint64_t)ph.p_offset + ph.p_filesz;
    }
  }
  if (need > size)
    return truncated(path, size, need, err, errlen);
  return Q8RT_OK;
}

q8rt_status q8rt_check_elf(const char *path, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return q8rt_fail(Q8RT_ERR_LOAD, err, errlen, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  q8rt_status s;
  if (fstat(fd, &st) != 0)
    s = q8rt_fail(Q8RT_ERR_LOAD, err, errlen, "cannot open '%s': %s", path, strerror(errno));
  else if (S_ISDIR(st.st_mode))
    s = q8rt_fail(Q8RT_ERR_LOAD, err, errlen, "cannot open '%s': %s", path, strerror(EISDIR));
  else if (!S_ISREG(st.st_mode))
    s = q8rt_fail(Q8RT_ERR_LOAD, err, errlen, "cannot load '%s': not a regular file", path);
  else
    s = check_headers(fd, path, (uint64_t)st.st_size, err, errlen);
  close(fd);
  return s;
}
