/*
 * binary.c - deciding that a worker binary is safe to run, and pinning it.
 *
 * A rollover opens its command once, checks the open file (not the path,
 * which may change under us), and keeps the fd: every worker of that
 * generation, including crash restarts, is exec'd from it with execveat,
 * so it runs exactly the inode that was checked.
 *
 * The checks follow what was measured on Linux (see the design notes): no
 * single inotify event means "the new file is complete", so completeness
 * is verified instead.  A file someone still has open for writing cannot
 * take a read lease (F_SETLEASE fails with EAGAIN), and an ELF file cut
 * short has program headers, a PT_LOAD segment or the section header
 * table beyond its end.  `#!` scripts cannot be exec'd from a close-on-
 * exec fd (the interpreter opens /dev/fd/N), so they run by path.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rollover.h"

static int read_at(int fd, void *buf, size_t len, off_t off)
{
	ssize_t n = pread(fd, buf, len, off);

	return n == (ssize_t)len ? 0 : -1;
}

static int fits(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/* The ELF64 and ELF32 layouts differ only in field widths. */
#define ELF_CHECK(Ehdr, Phdr)                                                  \
	static int elf_check_##Ehdr(int fd, uint64_t size)                     \
	{                                                                      \
		Ehdr eh;                                                       \
		if (read_at(fd, &eh, sizeof(eh), 0) == -1)                     \
			return -1;                                             \
		if (eh.e_phentsize != sizeof(Phdr) ||                          \
		    !fits(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Phdr),     \
			  size))                                               \
			return -1;                                             \
		if (eh.e_shoff != 0 &&                                         \
		    !fits(eh.e_shoff, (uint64_t)eh.e_shnum * eh.e_shentsize,   \
			  size))                                               \
			return -1;                                             \
		for (unsigned i = 0; i < eh.e_phnum; i++) {                    \
			Phdr ph;                                               \
			if (read_at(fd, &ph, sizeof(ph),                       \
				    (off_t)(eh.e_phoff + i * sizeof(ph))) ==   \
			    -1)                                                \
				return -1;                                     \
			if (ph.p_type == PT_LOAD &&                            \
			    !fits(ph.p_offset, ph.p_filesz, size))             \
				return -1;                                     \
		}                                                              \
		return 0;                                                      \
	}

ELF_CHECK(Elf64_Ehdr, Elf64_Phdr)
ELF_CHECK(Elf32_Ehdr, Elf32_Phdr)

/* 0: complete ELF; 1: script; -1 with *why. */
static int check_content(int fd, uint64_t size, const char **why)
{
	unsigned char id[EI_NIDENT];

	if (size >= 2 && read_at(fd, id, 2, 0) == 0 && id[0] == '#' &&
	    id[1] == '!')
		return 1;
	if (size < sizeof(id) || read_at(fd, id, sizeof(id), 0) == -1 ||
	    memcmp(id, ELFMAG, SELFMAG) != 0) {
		*why = "neither an ELF executable nor a #! script";
		return -1;
	}
	if ((id[EI_CLASS] == ELFCLASS64 &&
	     elf_check_Elf64_Ehdr(fd, size) == 0) ||
	    (id[EI_CLASS] == ELFCLASS32 && elf_check_Elf32_Ehdr(fd, size) == 0))
		return 0;
	*why = "incomplete ELF file (headers or segments past its end)";
	return -1;
}

/*
 * Is anyone writing the file?  A read lease is refused while it is open
 * for writing.  Where leases are not available (not the owner and no
 * CAP_LEASE, or a filesystem without them) the check is skipped.
 */
static int being_written(int fd)
{
	if (fcntl(fd, F_SETLEASE, F_RDLCK) == -1)
		return errno == EAGAIN;
	(void)fcntl(fd, F_SETLEASE, F_UNLCK);
	return 0;
}

void binary_init(struct binary *b)
{
	memset(b, 0, sizeof(*b));
	b->fd = -1;
}

int binary_open(struct binary *b, const char *path, const char **why)
{
	struct stat st;
	int fd, kind;

	binary_init(b);
	b->busy = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		*why = strerror(errno);
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		*why = "not a regular file";
		goto fail;
	}
	if ((st.st_mode & 0111) == 0 ||
	    faccessat(fd, "", X_OK, AT_EMPTY_PATH | AT_EACCESS) == -1) {
		*why = "not executable";
		goto fail;
	}
	if (being_written(fd)) {
		*why = "still open for writing";
		b->busy = 1;
		goto fail;
	}
	if ((kind = check_content(fd, (uint64_t)st.st_size, why)) == -1) {
		b->busy = 1; /* may be in the middle of a write */
		goto fail;
	}
	b->fd = fd;
	b->script = kind == 1;
	b->dev = st.st_dev;
	b->ino = st.st_ino;
	b->size = st.st_size;
	b->mtime = st.st_mtim;
	return 0;
fail:
	close(fd);
	return -1;
}

int binary_same(const struct binary *a, const struct binary *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec;
}

void binary_close(struct binary *b)
{
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
}
