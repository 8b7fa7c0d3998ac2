"use strict";
// Swagger UI for /openapi.json, from assets served by this server (no CDN: works offline).
// "Authorize" takes the token given to `pgqueue serve --token`.
window.ui = SwaggerUIBundle({
  url: "../openapi.json", // relative to /api/docs, as the page's assets (a proxy's prefix)
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  persistAuthorization: false,
});
