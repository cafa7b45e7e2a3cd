/* GET /healthz, /metrics, /openapi.json and /docs. */
#include <string.h>

#include "config.h"
#include "api/gpu-json.h"
#include "core/alloc.h"
#include "core/log.h"
#include "llm/backend.h"
#include "sandbox/gpu-nvml.h"
#include "server/server.h"

/* The GPUs a sandbox can be given now (a few directory reads: cheap enough per probe, and a driver
 * loaded after start shows). A host whose GPUs cannot be read is logged and shows none. */
static void
find_gpus(struct lms_gpus *gpus)
{
	_cleanup_error_ struct lms_error *err = NULL;
	if (lms_gpu_discover("/", gpus, &err) < 0) {
		lms_log(LMS_LOG_WARNING, NULL, "gpu discovery failed", "error", err->message, NULL);
		memset(gpus, 0, sizeof(*gpus));
	}
	if (!gpus->control)
		gpus->count = 0;   /* nodes without nvidiactl cannot be used */
	lms_gpu_nvml_memory(gpus); /* NVML, where the daemon found it at start (daemon.c) */
}

enum MHD_Result
lms_route_healthz(struct lms_request *req)
{
	struct lms_gpus gpus;
	find_gpus(&gpus);
	return lms_reply_json(req, 200,
			      json_pack("{s:s, s:s, s:o, s:i, s:o}", "status", "ok", "version", LMS_VERSION, "backends",
					lms_backends_health_json(req->server->backends), "active_sandboxes",
					atomic_load(&req->server->active), "gpus", lms_gpus_json(&gpus)));
}

/* lms_gpus (how many) and lms_gpu_info (one series per GPU, its name and uuid as labels). */
static void
render_gpus(struct lms_buf *out)
{
	struct lms_gpus gpus;
	find_gpus(&gpus);
	char line[512];
	int n = snprintf(line, sizeof(line),
			 "# HELP lms_gpus NVIDIA GPUs a sandbox can be given (gpu: true).\n# TYPE lms_gpus gauge\n"
			 "lms_gpus %zu\n# HELP lms_gpu_info The GPUs by index, name and uuid.\n"
			 "# TYPE lms_gpu_info gauge\n",
			 gpus.count);
	lms_buf_append(out, line, (size_t)n);
	for (size_t i = 0; i < gpus.count; i++) {
		const struct lms_gpu *g = &gpus.gpu[i];
		n = snprintf(line, sizeof(line), "lms_gpu_info{index=\"%u\",name=\"%s\",uuid=\"%s\"} 1\n", g->index,
			     g->name, g->uuid);
		lms_buf_append(out, line, n > 0 && (size_t)n < sizeof(line) ? (size_t)n : 0);
	}
}

enum MHD_Result
lms_route_metrics(struct lms_request *req)
{
	struct lms_buf out = {0};
	lms_metrics_render(&req->server->metrics, atomic_load(&req->server->active), &out);
	render_gpus(&out);
	size_t len;
	char *text = lms_buf_steal(&out, &len);
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
	return lms_reply(req, 200, resp);
}

enum MHD_Result
lms_route_openapi(struct lms_request *req)
{
	return lms_reply_json(req, 200, lms_openapi_document());
}

/* Renders /openapi.json with a few lines of script: nothing is loaded from another host. */
static const char docs_page[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>lm-sandbox API</title>\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "h2{margin-top:2rem;font-family:ui-monospace,monospace}.m{display:inline-block;min-width:4rem;font-weight:700}"
    ".get{color:#0a6}.post{color:#06c}pre{background:#f4f4f4;padding:.75rem;overflow:auto}"
    "code{font-family:ui-monospace,monospace}</style></head>\n<body>\n<h1>lm-sandbox API</h1>\n"
    "<p>Every response carries <code>X-Request-Id</code>; every error is "
    "<code>{\"error\": {\"message\", \"type\", \"code\"}}</code>. Routes marked &#128274; need "
    "<code>Authorization: Bearer &lt;token&gt;</code> when the server has a token. The machine-readable "
    "document is <a href=\"/openapi.json\">/openapi.json</a>.</p>\n<div id=\"routes\">Loading "
    "/openapi.json&hellip;</div>\n<h2>Schemas</h2><div id=\"schemas\"></div>\n"
    "<script>\n"
    "function el(t,c,x){const e=document.createElement(t);if(c)e.className=c;if(x!==undefined)e.textContent=x;"
    "return e}\n"
    "fetch('/openapi.json').then(r=>r.json()).then(doc=>{const root=document.getElementById('routes');"
    "root.textContent='';for(const [path,item] of Object.entries(doc.paths)){for(const [m,op] of "
    "Object.entries(item)){const h=el('h2');h.append(el('span','m '+m,m.toUpperCase()),path+"
    "(op.security&&op.security.length===0?'':' \\u{1F512}'));root.append(h,el('p','',op.summary));"
    "if(op.requestBody){root.append(el('p','','Body: '+JSON.stringify(op.requestBody.content['application/json']"
    ".schema)))}}}const s=document.getElementById('schemas');for(const [n,v] of "
    "Object.entries(doc.components.schemas)){s.append(el('h3','',n),el('pre','',JSON.stringify(v,null,2)))}})"
    ".catch(e=>{document.getElementById('routes').textContent='Could not load /openapi.json: '+e});\n"
    "</script>\n</body></html>\n";

enum MHD_Result
lms_route_docs(struct lms_request *req)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(sizeof(docs_page) - 1, (void *)docs_page, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
	MHD_add_response_header(resp, "Content-Security-Policy",
				"default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'");
	return lms_reply(req, 200, resp);
}
