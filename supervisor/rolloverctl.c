/*
 * rolloverctl.c - the control client.
 *
 * The control socket does not exist yet in this version of the daemon;
 * until it does, the client parses its command line as documented and
 * says plainly that it cannot reach the daemon.  Signals (rollover(8))
 * do the same work in the meantime.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void __attribute__((noreturn)) usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: rolloverctl [-c FILE | -S SOCKET] status [--json]\n"
		"       rolloverctl [-c FILE | -S SOCKET] reload [GROUP] "
		"[--no-wait]\n"
		"       rolloverctl [-c FILE | -S SOCKET] scale GROUP N\n"
		"       rolloverctl [-c FILE | -S SOCKET] stop\n");
	_exit(status);
}

int main(int argc, char **argv)
{
	int ch;

	while ((ch = getopt(argc, argv, "+c:S:h")) != -1) {
		if (ch == 'h')
			usage(0);
		if (ch != 'c' && ch != 'S')
			usage(2);
	}
	if (optind >= argc)
		usage(2);
	if (strcmp(argv[optind], "status") != 0 &&
	    strcmp(argv[optind], "reload") != 0 &&
	    strcmp(argv[optind], "scale") != 0 &&
	    strcmp(argv[optind], "stop") != 0)
		usage(2);
	fprintf(stderr,
		"rolloverctl: %s: this daemon has no control socket "
		"yet; use signals (see rollover(8))\n",
		argv[optind]);
	return 1;
}
