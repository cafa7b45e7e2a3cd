#pragma once
/*
 * The upstream resolver a network sandbox's DNS forwarder asks: the server's --network-dns ("ADDR",
 * "ADDR:PORT", "[IPv6]:PORT"; port 53 by default), or the first usable `nameserver` of the host's
 * /etc/resolv.conf. The forwarder asks it from the host's network namespace, so a resolver on the host's
 * loopback (systemd-resolved's 127.0.0.53, dnsmasq) serves sandboxes too; sandboxes never reach it
 * themselves.
 */
#include <sys/socket.h>

#include "core/error.h"

int lms_net_resolver_parse(const char *text, struct sockaddr_storage *out, socklen_t *len, struct lms_error **err);

/* The first nameserver of a resolv.conf file (one with a %scope is skipped: a link-local resolver of one
 * interface). LMS_ERR_UNSUPPORTED, saying to use --network-dns, when there is none. */
int lms_net_resolver_from_conf(const char *path, struct sockaddr_storage *out, socklen_t *len, struct lms_error **err);
