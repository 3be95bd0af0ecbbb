// HTTP host service: the node makes the call (with a deadline) and answers status, headers and body.
(subject, payload) => {
  const url = new TextDecoder().decode(payload);
  const http = this.hostServices.http;
  const got = http.get(url, { headers: { 'x-from': 'nex' } });
  const posted = http.post(url, 'hello', { headers: { 'content-type': 'text/plain' } });
  const deleted = http.delete(url);
  const head = http.head(url);
  return { get: got.status, body: got.body, post: posted.body, del: deleted.status, head: head.status,
           type: got.headers['content-type'] };
};
