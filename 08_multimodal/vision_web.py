"""The chat page with a picture picker, served by chapter 08 itself (chapter 04 never imports chapter 08).

    python 08_multimodal/chat_vision.py --web        # http://127.0.0.1:8008

GET /                 the page: pick a generated scene (a number) or upload a PNG, then ask about it
GET /scene/N.png      generated scene N, scaled up
POST /chat            {"scene": N | "png": base64 PNG, "messages": [{"role", "content"}, ...]} -> {"reply": ...}
A bad request gets a 400 with one line saying what to fix.
"""
import base64
import io
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

import scenes
from chat_vision import png_pixels_to_scene_image, scene_picture

PAGE = """<!doctype html><meta charset="utf-8"><title>bytes2chat: chat about a picture</title>
<style>body{font-family:sans-serif;max-width:720px;margin:2em auto}#log div{margin:.4em 0}img{image-rendering:pixelated}</style>
<h2>Chat about a picture (chapter 08)</h2>
<p>Scene <input id=scene type=number min=0 value=0 style="width:5em"> or a PNG <input id=file type=file accept="image/png">
<button onclick="reset()">use this picture</button></p>
<img id=pic width=216 height=216 src="/scene/0.png"><div id=log></div>
<form onsubmit="send();return false"><input id=msg size=60 placeholder="What colour is the sun?"> <button>send</button></form>
<script>
let messages=[], png=null;
function reset(){messages=[];document.getElementById('log').innerHTML='';const f=document.getElementById('file').files[0];
 if(f){const r=new FileReader();r.onload=()=>{png=r.result.split(',')[1];document.getElementById('pic').src=r.result};r.readAsDataURL(f)}
 else{png=null;document.getElementById('pic').src='/scene/'+document.getElementById('scene').value+'.png'}}
async function send(){const m=document.getElementById('msg');messages.push({role:'user',content:m.value});show('you',m.value);m.value='';
 const body={messages}; if(png)body.png=png; else body.scene=+document.getElementById('scene').value;
 const r=await fetch('/chat',{method:'POST',body:JSON.stringify(body)});const j=await r.json();
 if(j.error){show('error',j.error);messages.pop();return}messages.push({role:'assistant',content:j.reply});show('assistant',j.reply)}
function show(who,text){const d=document.createElement('div');d.textContent=who+': '+text;document.getElementById('log').appendChild(d)}
</script>"""


def picture_of(request):
    """The request's picture as (IMAGE_SIZE, IMAGE_SIZE, 3) uint8; ValueError naming the problem."""
    if "png" in request:
        import matplotlib.image
        try:
            pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(request["png"], validate=True)), format="png")
        except Exception:  # noqa: BLE001
            raise ValueError("the uploaded file is not a PNG picture") from None
        return png_pixels_to_scene_image(pixels)
    scene = request.get("scene", 0)
    if not isinstance(scene, int) or scene < 0:
        raise ValueError("scene must be a number 0 or more")
    return scene_picture(scene)[0]


def make_handler(model, tokenizer):
    from chat_format import check_messages
    from llava import answer
    import torch

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path in ("/", "/index.html"):
                return self.send(200, PAGE.encode(), "text/html; charset=utf-8")
            if self.path.startswith("/scene/") and self.path.endswith(".png"):
                import matplotlib.image
                try:
                    image = scene_picture(int(self.path[len("/scene/"):-len(".png")]))[0]
                except ValueError:
                    return self.send(400, b"scene numbers are 0 or more", "text/plain")
                buffer = io.BytesIO()
                matplotlib.image.imsave(buffer, np.kron(image, np.ones((6, 6, 1), np.uint8)), format="png")
                return self.send(200, buffer.getvalue(), "image/png")
            self.send(404, b"not found", "text/plain")

        def do_POST(self):
            if self.path != "/chat":
                return self.send(404, b"not found", "text/plain")
            try:
                request = json.loads(self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 2_000_000)))
                if not isinstance(request, dict):
                    raise ValueError("send a JSON object")
                messages = request.get("messages")
                check_messages(messages)
                if messages[-1]["role"] != "user":
                    raise ValueError("the last message must be the user's")
                picture = torch.from_numpy(scenes.to_tensor_images(picture_of(request)[None]))
                reply = answer(model, tokenizer, [messages], picture, max_new_tokens=72)[0]
            except ValueError as error:  # json.JSONDecodeError is a ValueError too
                return self.send(400, json.dumps({"error": str(error).splitlines()[0]}).encode(), "application/json")
            self.send(200, json.dumps({"reply": reply}).encode(), "application/json")

        def send(self, status, body, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def serve(model, tokenizer, host="127.0.0.1", port=8008):
    server = ThreadingHTTPServer((host, port), make_handler(model, tokenizer))
    print(f"chat page at http://{host}:{port} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
