/* GET /healthz, /metrics, /openapi.json and /docs. */
#include <string.h>

#include "config.h"
#include "core/alloc.h"
#include "llm/backend.h"
#include "server/server.h"

enum MHD_Result
lms_route_healthz(struct lms_request *req)
{
	return lms_reply_json(req, 200,
			      json_pack("{s:s, s:s, s:o, s:i}", "status", "ok", "version", LMS_VERSION, "backends",
					lms_backends_health_json(req->server->backends), "active_sandboxes",
					atomic_load(&req->server->active)));
}

enum MHD_Result
lms_route_metrics(struct lms_request *req)
{
	struct lms_buf out = {0};
	lms_metrics_render(&req->server->metrics, atomic_load(&req->server->active), &out);
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
