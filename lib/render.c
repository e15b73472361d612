/* lib/render.c - placeholder, being written */
