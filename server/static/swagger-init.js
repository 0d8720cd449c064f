// Starts Swagger UI on /docs (server/docs_offline.py). A file rather than the usual inline
// script, which the Content-Security-Policy refuses; the settings come from data attributes.
(function () {
  "use strict";
  const root = document.getElementById("swagger-ui");
  const parameters = JSON.parse(root.dataset.parameters || "{}");
  window.ui = SwaggerUIBundle({
    ...parameters,
    url: root.dataset.openapiUrl,
    presets: [SwaggerUIBundle.presets.apis],
  });
})();
