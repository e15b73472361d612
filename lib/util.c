/* lib/util.c - placeholder, being written */
