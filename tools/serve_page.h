/*
 * serve_page.h - the status page `stele serve` answers GET / with
 * (serve_page.c).
 */
#ifndef STELE_TOOLS_SERVE_PAGE_H
#define STELE_TOOLS_SERVE_PAGE_H

/* One HTML document, its style and script inline (no external asset): it
 * fetches /api/status every 2 s and draws every log's state. */
extern const char serve_page_html[];

#endif
