/* osprey_route.js — the routing key of the osprey nginx site (osprey.conf): requests with the
 * same key go to the same replica (hash $osprey_route_key consistent), so that a conversation
 * finds its earlier turns in that replica's prefix cache. nginx's njs (Debian's
 * libnginx-mod-http-js, njs 0.7.9 and later) runs it through js_set; the site reads the body
 * before the variable is first used (mirror_request_body), so r.requestText is there.
 *
 * The key, in this order:
 *   1. "s:" + the X-Session-Id header, when the client sends one;
 *   2. "m:" + chat messages up to and including the first user message (so every later turn
 *      of a conversation keeps the key of its first), at most PREFIX_CHARS characters;
 *   3. "p:" + the first PREFIX_CHARS characters of a completion's prompt (the first prompt
 *      when it is a list);
 *   4. "" otherwise (no body, not JSON, no prompt): the site sends those to least_conn. */

/* Long enough to tell conversations apart, short enough that a conversation whose first
 * prompt is longer keeps one key as it grows. Requests that share these first characters
 * share a replica: a system prompt longer than this common to every client sends them all
 * to one replica, which is then the one to send X-Session-Id instead. */
var PREFIX_CHARS = 2048;

/* A message's content as text: a string, or the text parts of a list of parts. */
function content_text(c) {
    if (typeof c === 'string')
        return c;
    if (Array.isArray(c))
        return c.map(function (p) { return p && typeof p.text === 'string' ? p.text : ''; }).join('');
    return '';
}

function messages_key(msgs) {
    var s = '';

    for (var i = 0; i < msgs.length && s.length < PREFIX_CHARS; i++) {
        var m = msgs[i] || {};

        s += String(m.role) + '\n' + content_text(m.content) + '\n';
        if (m.role === 'user')
            break;
    }
    return s.length ? 'm:' + s.slice(0, PREFIX_CHARS) : '';
}

function prompt_key(p) {
    if (Array.isArray(p))
        p = p.length ? p[0] : '';
    if (Array.isArray(p))        /* token ids */
        p = p.join(',');
    if (typeof p !== 'string' || !p.length)
        return '';
    return 'p:' + p.slice(0, PREFIX_CHARS);
}

function route_key(r) {
    var sid = r.headersIn['X-Session-Id'];
    var body;

    if (sid)
        return 's:' + sid;
    try {
        /* Throws when the body is absent or was written to a file (larger than
         * client_body_buffer_size): such a request simply has no key. */
        body = JSON.parse(r.requestText);
    } catch (e) {
        return '';
    }
    if (!body || typeof body !== 'object')
        return '';
    if (Array.isArray(body.messages))
        return messages_key(body.messages);
    if (body.prompt !== undefined)
        return prompt_key(body.prompt);
    return '';
}

export default { route_key };
