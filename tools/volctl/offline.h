/* SPDX-License-Identifier: MIT */
/* volctl's verbs that work without the daemon (tools/volctl/check.c). */
#ifndef VOLCTL_OFFLINE_H
#define VOLCTL_OFFLINE_H

#include <stdbool.h>

/* volctl check --offline DEV... [--repair]: the exit status. */
int volctl_check_offline(char **paths, int n, bool repair, bool json);

#endif
