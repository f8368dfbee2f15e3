# A minimal keep-alive HTTP sink for webhook benchmarks: answers every
# request 204 and counts them.
import asyncio, sys, time
count = 0
async def handle(reader, writer):
    global count
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            if n:
                await reader.readexactly(n)
            count += 1
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    except Exception:
        writer.close()
async def report():
    last = 0
    while True:
        await asyncio.sleep(1)
        print(time.time(), count, count - last, flush=True)
        last = count
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    asyncio.create_task(report())
    async with server:
        await server.serve_forever()
asyncio.run(main())
