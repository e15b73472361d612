/* lib/hdr.c - placeholder, being written */
