/* lib/dir.h - the names in a directory, filtered and sorted */
#ifndef MG_DIR_H
#define MG_DIR_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>

#include "mg-err.h"

/* Whether the directory entry name is wanted; arg is the caller's. */
typedef bool mg_dir_want_fn(const char *name, void *arg);

/*
 * The names of the entries of the open directory d that want() takes, in
 * strcmp() order, as *ret_names (each and the array owned: free them with
 * mg_dir_names_free()) and *ret_n.  More than max wanted names is MG_EINPUT;
 * a failed readdir() MG_ESYS (errno kept); MG_ENOMEM.  Nothing is set on
 * failure.  Reads d to its end.
 */
int mg_dir_names(DIR *d, mg_dir_want_fn *want, void *arg, size_t max, char ***ret_names,
		 size_t *ret_n);

/* Free names[0..n) and the array.  NULL-safe. */
void mg_dir_names_free(char **names, size_t n);

#endif /* MG_DIR_H */
