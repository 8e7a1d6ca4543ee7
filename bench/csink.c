/* SPDX-License-Identifier: AGPL-3.0-or-later */
/*
 * The floor for any osmo-pcap server, for bench/server_vs_csink.py (a test
 * peer like tcpdump, never part of the product): accept N connections, walk
 * the 4-byte frame headers (type, spare, big-endian length) and write every
 * payload (LINK_HDR's pcap header first, then the records) to one file per
 * connection with 1 MiB buffered writes. No validation at all.
 *
 * Usage: csink PORT N DIR   (prints "listening" once ready, exits after N
 * connections have closed; the caller times it by the files it writes)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF (1 << 20)
#define WBUF (1 << 20)
#define MAXFRAME (4 + 65535)

struct conn {
	int fd, out;
	unsigned char tail[MAXFRAME];   /* an incomplete frame between reads */
	size_t ntail;
	unsigned char *wbuf;
	size_t nw;
};

static unsigned char rbuf[MAXFRAME + RBUF];

static void flush_out(struct conn *c)
{
	size_t done = 0;
	while (done < c->nw) {
		ssize_t n = write(c->out, c->wbuf + done, c->nw - done);
		if (n < 0) {
			perror("write");
			exit(1);
		}
		done += n;
	}
	c->nw = 0;
}

static void put(struct conn *c, const unsigned char *p, size_t n)
{
	if (c->nw + n > WBUF)
		flush_out(c);
	memcpy(c->wbuf + c->nw, p, n);
	c->nw += n;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: csink PORT N DIR\n");
		return 2;
	}
	int port = atoi(argv[1]), want = atoi(argv[2]);
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {0};
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1024)) {
		perror("bind/listen");
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	struct conn **conns = calloc(want, sizeof(*conns));
	int ep = epoll_create1(0), live = 0;
	for (int i = 0; i < want; i++) {
		struct conn *c = calloc(1, sizeof(*c));
		char path[4096];
		c->fd = accept(ls, NULL, NULL);
		if (c->fd < 0) {
			perror("accept");
			return 1;
		}
		snprintf(path, sizeof(path), "%s/c%d.pcap", argv[3], i);
		c->out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		c->wbuf = malloc(WBUF);
		if (c->out < 0 || !c->wbuf) {
			perror(path);
			return 1;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
		conns[i] = c;
		live++;
	}
	struct epoll_event evs[64];
	while (live) {
		int k = epoll_wait(ep, evs, 64, -1);
		if (k < 0 && errno != EINTR) {
			perror("epoll_wait");
			return 1;
		}
		for (int e = 0; e < k; e++) {
			struct conn *c = evs[e].data.ptr;
			/* The saved tail goes in front of what is read now. */
			memcpy(rbuf, c->tail, c->ntail);
			ssize_t n = read(c->fd, rbuf + c->ntail, RBUF);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				flush_out(c);
				close(c->out);
				close(c->fd);
				live--;
				continue;
			}
			size_t end = c->ntail + n, pos = 0;
			while (end - pos >= 4) {
				size_t len = (rbuf[pos + 2] << 8) | rbuf[pos + 3];
				if (end - pos < 4 + len)
					break;
				put(c, rbuf + pos + 4, len);
				pos += 4 + len;
			}
			c->ntail = end - pos;
			memcpy(c->tail, rbuf + pos, c->ntail);
		}
	}
	return 0;
}
